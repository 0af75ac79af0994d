// Built-in preprocessing ops and the geometry helpers they share.
//
// Mirrors big_vision / Scenic big_transfer `preprocess_ops` (decode, resize, resize_small,
// central_crop, random_crop, inception_crop, flip_lr, value_range, standardize, randaug)
// plus Scenic's CIFAR reflect-pad crop, torchvision-style colour jitter and random
// erasing, and the DETR detection transforms (multi-scale resize with a max size, random
// size crop, padding to a fixed size with a padding mask).
//
// Every geometric op moves the image, `mask` (nearest, void = kIgnoreLabel), `pad_mask`
// and `boxes` together through the helpers below; boxes are clipped to the new image and
// boxes left with zero width or height are removed together with their `box_labels` and
// `is_crowd` entries (DETR's `crop` semantics). Colour ops require a uint8 image (run them
// before value_range), as big_vision's randaug does. Ops never write into the pixels
// they were given (a cached decoded example may share them): they build new matrices.
//
// The op registrations are split by theme: geometric_transforms.cc, color_transforms.cc,
// randaugment.cc, detection_transforms.cc; transforms.cc registers them all.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <string>

#include "scenic/dataset_lib/example.h"
#include "scenic/dataset_lib/preprocess.h"

namespace scenic::dataset {

// ---- geometry helpers (usable from project-specific ops) ----

// cv::INTER_* for 'bilinear' | 'bicubic' | 'nearest' | 'area' | 'lanczos3' (errors name
// `where`).
int interpolation_from_name(const std::string& method, const std::string& where);

// Resizes image (with `interpolation`), mask and pad_mask (nearest) to height x width
// and scales boxes by (width / W, height / H).
void resize_example(Example& ex, int height, int width, int interpolation);

// Crops to `roi` (must lie inside the image): boxes are shifted by (-x, -y), clipped to
// the crop and degenerate ones dropped.
void crop_example(Example& ex, const cv::Rect& roi);

// Mirrors left-right: x -> W - x for pixels and boxes.
void flip_example_lr(Example& ex);

// Pads by the given amounts. `border` is cv::BORDER_CONSTANT (image value 0, mask
// kIgnoreLabel, pad_mask 0: the padding is recorded) or cv::BORDER_REFLECT_101 (tf.pad's
// REFLECT: image and mask reflected, pad_mask reflected too since the pixels are real).
// Boxes shift by (left, top).
void pad_example(Example& ex, int top, int bottom, int left, int right, int border);

// Applies the 2x3 affine map `m` (source -> destination pixel coordinates) to the image
// (fill `fill`, interpolation `interpolation`), to the mask (nearest, fill kIgnoreLabel),
// to a non-empty pad_mask (fill 0; the fill is not recorded as padding otherwise), and to
// boxes (the box around the four moved corners, then clipped).
void warp_affine_example(Example& ex, const cv::Mat& m, const cv::Scalar& fill,
                         int interpolation);

// Clips boxes to [0, W] x [0, H] and drops those with width or height <= 0, keeping
// box_labels / is_crowd aligned.
void clip_and_filter_boxes(Example& ex);

// Throws scenic::Error naming `where` unless the image is CV_8U.
void require_uint8(const Example& ex, const std::string& where);

// RandAugment's op pool (randaugment.cc) in TF's order: 0 AutoContrast, 1 Equalize,
// 2 Invert, 3 Rotate, 4 Posterize, 5 Solarize, 6 Color, 7 Contrast, 8 Brightness,
// 9 Sharpness, 10 ShearX, 11 ShearY, 12 TranslateX, 13 TranslateY, 14 Cutout,
// 15 SolarizeAdd. apply_randaug_op runs one at magnitude M (level M / 10), for tests and
// project-specific policies.
constexpr int kNumRandaugOps = 16;
void apply_randaug_op(int op, double magnitude, Example& ex, Rng& rng);

// DETR's RandomResize size rule: the shorter side becomes `size`, the longer one follows
// the aspect ratio, and `size` is first reduced so the longer side stays <= max_size
// (max_size <= 0: no cap). Returns (height, width).
std::array<int, 2> detr_resize_shape(int height, int width, int size, int max_size);

// ---- registration (one function per file) ----
void register_geometric_ops(PreprocessRegistry& registry);
void register_color_ops(PreprocessRegistry& registry);
void register_randaugment_ops(PreprocessRegistry& registry);
void register_detection_ops(PreprocessRegistry& registry);

}  // namespace scenic::dataset
