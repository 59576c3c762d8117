// CUDA kernel of pycmlt::ce_loss_aux (docs/ops/cross_entropy.md, "The auxiliary"): ATen ops on the
// device, so neither it nor the cross-entropy that calls it synchronises with the host.
#include "cuda/ce_loss_aux.h"

#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/ce_glue.h"
#include "common/common.h"

namespace pycmlt {

std::tuple<at::Tensor, at::Tensor> ce_loss_aux_cuda(const at::Tensor& target,
                                                    const std::optional<at::Tensor>& class_weight,
                                                    int64_t num_classes, int64_t ignore_index, int64_t reduction) {
  check_ce_loss_aux_args(target, class_weight, num_classes, reduction);
  const c10::cuda::CUDAGuard guard(target.device());
  const auto f32 = target.options().dtype(at::kFloat);
  const at::Tensor counted = target.ne(ignore_index);
  // An out-of-range counted target reads class 0 here (never out of bounds); the kernels give its row NaN.
  const at::Tensor in_range = counted.logical_and(target.ge(0)).logical_and(target.lt(num_classes));
  const at::Tensor safe = at::where(in_range, target, at::zeros_like(target));
  at::Tensor w_y, w_total;
  if (class_weight.has_value()) {
    w_y = at::where(counted, class_weight->index_select(0, safe), at::zeros({}, f32));
    w_total = class_weight->sum();
  } else {
    w_y = counted.to(at::kFloat);
    w_total = at::full({}, static_cast<double>(num_classes), f32);
  }
  const at::Tensor denom = w_y.sum();
  // All rows ignored: 1 / 0 = inf, and the mean loss 0 / 0 = NaN, as in F.cross_entropy.
  const at::Tensor grad_scale = reduction == kMean ? denom.reciprocal() : at::ones_like(denom);
  return {at::stack({grad_scale, w_total}), denom};
}

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) { m.impl("ce_loss_aux", &ce_loss_aux_cuda); }

}  // namespace pycmlt
