// safetensors files: reading and writing (Hugging Face's format, what timm and most of
// the PyTorch ecosystem publish weights in). Scenic has no counterpart; we use it to move
// weights between this library and Python.
//
// Layout: uint64 N (little-endian) | N bytes of JSON header | data. The header maps each
// tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
// relative to the start of the data) and may hold "__metadata__": {string: string}.
// Dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL. The reader checks that every
// tensor's byte range is inside the file and matches its shape and dtype; errors name
// the file and the tensor. The writer pads the header with spaces to a multiple of 8
// bytes (as the Python library does) and lays tensors out in name order.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "scenic/common_lib/npz.h"  // TensorMap

namespace scenic::common {

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& context);
SafetensorsFile read_safetensors(const std::string& path);

std::string safetensors_bytes(const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace scenic::common
