// Readers for the IDX file format of MNIST-style datasets (raw or gzip-compressed).
//
// Mirrors what TFDS's mnist/fashion_mnist builders do before Scenic sees the data
// (Scenic's mnist/fashion_mnist datasets read them through tfds). An IDX file is a
// big-endian header `00 00 <type> <ndims>`, ndims big-endian uint32 sizes, then the
// values row-major. Whether a file is gzipped is decided by the gzip magic bytes, not by
// its name. Every failure (missing file, corrupt gzip stream, wrong magic, truncated
// header or data, trailing bytes) throws scenic::Error whose message starts with the path.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace scenic::dataset {

// The whole file's bytes, gunzipped when the file starts with the gzip magic (1f 8b).
std::vector<uint8_t> read_maybe_gzipped_file(const std::string& path);

// Any IDX array: ubyte -> uint8, sbyte -> int8, short -> int16, int -> int32,
// float -> float32, double -> float64; shape = the header's sizes.
torch::Tensor read_idx(const std::string& path);

// An idx3-ubyte image file (magic 0x00000803) as uint8 [N, 1, H, W] (NCHW).
torch::Tensor read_idx_images(const std::string& path);

// An idx1-ubyte label file (magic 0x00000801) as int64 [N].
torch::Tensor read_idx_labels(const std::string& path);

// `dir/name` if it exists, else `dir/name.gz`; throws naming both when neither does
// (and naming `dir` alone when the directory itself is missing).
std::string find_data_file(const std::string& dir, const std::string& name);

}  // namespace scenic::dataset
