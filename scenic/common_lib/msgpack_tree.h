// Flax msgpack checkpoints read into a flat name -> tensor map.
//
// Scenic saves its TrainState with flax.training.checkpoints.save_checkpoint (legacy,
// non-Orbax format: one `checkpoint_<step>` file), which is
// flax.serialization.to_bytes(state): the state dict (dicts of dicts; lists and tuples
// become {'0': .., '1': ..}) packed with msgpack, where
//   * an array is msgpack ext type 1 holding msgpack((shape tuple, dtype name, C-order
//     bytes)), e.g. ((3, 4), 'float32', b'...'); 'bfloat16' is JAX's;
//   * a NumPy scalar is ext type 3 with the same payload for a 0-d array;
//   * a Python complex is ext type 2 holding msgpack((real, imag));
//   * an array over 2**30 bytes is a dict {'__msgpack_chunked_array__': True,
//     'shape': {'0': d0, ...}, 'chunks': {'0': flat ext-1 array, ...}}.
// Leaves become tensors named by their '/'-joined path ('params/Transformer/
// encoderblock_0/LayerNorm_0/scale'), as flax.traverse_util.flatten_dict(sep='/') would.
// Plain msgpack numbers and booleans become 0-d tensors (int64, float64, bool); None,
// strings and bytes (metadata) are skipped. A truncated or malformed buffer throws a
// scenic::Error naming the file and the path where decoding stopped.
//
// The writer is the inverse, for tests and export: flat map -> nested maps of ext-1
// arrays, which flax.serialization.msgpack_restore reads back.
#pragma once

#include <string>
#include <string_view>

#include "scenic/common_lib/npz.h"  // TensorMap

namespace scenic::common {

// Decodes a flax msgpack buffer; `context` (the file) starts error messages.
TensorMap parse_flax_msgpack(std::string_view bytes, const std::string& context);
TensorMap read_flax_checkpoint(const std::string& path);

// msgpack bytes of the nested tree that `tensors` ('/'-joined names) flatten from.
std::string flax_msgpack_bytes(const TensorMap& tensors);
void write_flax_checkpoint(const std::string& path, const TensorMap& tensors);

}  // namespace scenic::common
