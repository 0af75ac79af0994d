// torchvision/timm ResNet state_dicts <-> our ResNet (Scenic's resnet.py layout), so
// weights move between this library and PyTorch's ResNets (torchvision's resnet50,
// timm's resnet50.a1_in1k, ...; both use the same keys). Scenic has no counterpart
// (its Deformable DETR converts the torchvision ResNet-50 by hand, the same mapping).
//
// Keys (torchvision's)               ours
//   conv1.weight                      stem_conv.weight
//   bn1.{weight,bias}                 init_bn.{scale,bias}
//   bn1.{running_mean,running_var}    init_bn.{mean,var}
//   layer{i+1}.{j}.conv{1,2,3}        ResidualBlock_k.conv{1,2,3}   (bottleneck; k counts
//   layer{i+1}.{j}.bn{1,2,3}          ResidualBlock_k.bn{1,2,3}      blocks over the net)
//   layer{i+1}.{j}.conv{1,2}, bn{1,2} ResidualBlock_k.conv{2,3}, bn{2,3} (basic blocks)
//   layer{i+1}.{j}.downsample.0/.1    ResidualBlock_k.proj_conv / proj_bn
//   fc.{weight,bias}                  output_projection.{weight,bias}
//   *.num_batches_tracked             (read and ignored; written as 0)
// Conv kernels are OIHW on both sides and torch.nn.Linear's [out, in] is ours, so no
// tensor changes layout.
//
// Bottleneck ResNets (26, 50, 101, 152, 200) are the same function on both sides: both
// are v1.5 (stride on the 3x3 conv) and project the shortcut exactly when the shape
// changes. Basic-block ResNets are not: Scenic's rule (C_in != 4 * filters) gives *every*
// basic block a projection, torchvision's only the first of stages 2-4. On import, a
// projection torchvision lacks becomes the identity (1x1 kernel I, BN scale 1, bias 0,
// mean 0, var 1 - eps), which computes the same function; on export such a projection
// must still be that identity (to 1e-6), else it cannot be expressed and we throw.
//
// BatchNorm statistics need no conversion: torch's running_var is a running average of
// the *unbiased* batch variance and Flax's of the biased one, but that only changes how
// the buffer is updated in training; in eval both compute (x - mean) / sqrt(var + eps)
// from the stored buffer, so the stored values carry over as they are (eps 1e-5 on both
// sides; torch's momentum 0.1 is Flax's 0.9).
#pragma once

#include "scenic/common_lib/npz.h"
#include "scenic/projects/baselines/resnet.h"
#include "scenic/projects/baselines/weight_import.h"

namespace scenic::baselines {

// True when `state` looks like a torchvision/timm ResNet state_dict.
bool is_torchvision_resnet_state(const common::TensorMap& state);

// Applies a torchvision/timm ResNet state_dict to our ResNet; the report's `unused` names
// torchvision keys. Shape mismatches and structural mismatches (a downsample where our
// block has no projection, a missing block) throw scenic::Error naming the key.
WeightImportReport import_torchvision_resnet(ResNet& resnet, const common::TensorMap& state,
                                             const WeightImportOptions& options = {});

// Our ResNet as a torchvision state_dict (what torchvision's ResNet(...).load_state_dict
// takes with strict=True, num_batches_tracked included).
common::TensorMap export_torchvision_resnet(ResNet& resnet);

}  // namespace scenic::baselines
