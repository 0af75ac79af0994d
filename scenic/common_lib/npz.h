// NumPy .npy and .npz files: reading into torch tensors, writing for tests and export.
//
// big_vision and the AugReg ViT/Mixer releases ship their weights as `.npz` archives
// (np.savez of a flat {'Transformer/encoderblock_0/...': array} dict); Scenic reads them
// in pretrain_utils.convert_big_vision_to_scenic_checkpoint and vit.load_augreg_params.
//
// .npy (format versions 1, 2 and 3): the magic "\x93NUMPY", a version, a little-endian
// header length (uint16 in v1, uint32 later) and a Python-literal header dict
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, then the raw data.
// Supported dtypes: little-endian (or byte-order-free) float16/32/64, bfloat16 (ml_dtypes
// writes it as the void descr '|V2' that we cannot tell apart, so it is rejected),
// int8/16/32/64, uint8, bool. Fortran-ordered arrays are read and made C-contiguous.
//
// .npz: a zip archive of `<key>.npy` members, stored (np.savez) or deflated
// (np.savez_compressed, inflated with zlib), ZIP64 records included (numpy forces ZIP64
// local headers). Each member's CRC-32 is checked. write_npz writes a stored archive.
//
// Every error names the file and, for archives, the member.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <string_view>

#include "scenic/common_lib/errors.h"

namespace scenic::common {

// Tensors by name; ordered so that files and reports come out deterministic.
using TensorMap = std::map<std::string, torch::Tensor>;

// Parses the bytes of one .npy file; `context` (the file, the member) starts error messages.
torch::Tensor parse_npy(std::string_view bytes, const std::string& context);
// The .npy (format 1.0) bytes of a CPU tensor of a supported dtype (made contiguous).
std::string npy_bytes(const torch::Tensor& tensor);

torch::Tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const torch::Tensor& tensor);

// Keys are the member names without their ".npy" suffix, as np.load gives them.
TensorMap read_npz(const std::string& path);
// A stored (uncompressed) archive, as np.savez writes it; throws if it would need ZIP64.
void write_npz(const std::string& path, const TensorMap& tensors);

// Whole-file helpers shared by the weight formats (throw scenic::Error naming the path).
std::string read_binary_file(const std::string& path);
void write_binary_file(const std::string& path, std::string_view bytes);

}  // namespace scenic::common
