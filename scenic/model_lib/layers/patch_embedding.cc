#include "scenic/model_lib/layers/patch_embedding.h"

#include <torch/torch.h>

#include <variant>

#include "scenic/model_lib/layers/dense.h"

namespace scenic::model {
namespace {
bool is_patchify(const torch::nn::detail::ConvNdOptions<2>& o) {
  const auto* pad = std::get_if<torch::ExpandingArray<2>>(&o.padding());
  const bool no_pad = std::holds_alternative<torch::enumtype::kValid>(o.padding()) ||
                      (pad != nullptr && (*pad)->at(0) == 0 && (*pad)->at(1) == 0);
  return o.kernel_size()->at(0) == o.stride()->at(0) && o.kernel_size()->at(1) == o.stride()->at(1) && no_pad &&
         o.dilation()->at(0) == 1 && o.dilation()->at(1) == 1 && o.groups() == 1 && !o.transposed();
}
}  // namespace

torch::Tensor embed_patches(const torch::nn::Conv2d& conv, const torch::Tensor& images) {
  const auto& o = conv->options;
  // Anything else (other input ranks or channel counts included: the conv's own error).
  if (!is_patchify(o) || images.dim() != 4 || images.size(1) != o.in_channels())
    return conv.ptr()->forward(images).flatten(2).transpose(1, 2);
  const int64_t b = images.size(0), c = images.size(1), ph = o.kernel_size()->at(0), pw = o.kernel_size()->at(1);
  const int64_t gh = images.size(2) / ph, gw = images.size(3) / pw;
  const auto x = images.narrow(2, 0, gh * ph).narrow(3, 0, gw * pw);
  // [B, C, gh, ph, gw, pw] -> [B, gh, gw, C, ph, pw]: one row per patch, in the kernel's order.
  const auto patches =
      x.reshape({b, c, gh, ph, gw, pw}).permute({0, 2, 4, 1, 3, 5}).reshape({b * gh * gw, c * ph * pw});
  const auto w = conv->weight.reshape({conv->weight.size(0), c * ph * pw});
  return dense(patches, w, conv->bias).view({b, gh * gw, w.size(0)});
}

}  // namespace scenic::model
