// CPU kernel of pycmlt::ce_loss_aux: the host loop of ce_loss_aux_host (no chain of ATen ops: it is
// on the per-call path of small-batch cross-entropy), also called by the CPU cb_cross_entropy glue.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/ce_glue.h"
#include "common/common.h"
#include "cpu/ce_loss_aux.h"

namespace pycmlt {

CeLossAux ce_loss_aux_host(const int64_t* target, int64_t num_rows, const float* class_weight, int64_t num_classes,
                           int64_t ignore_index, int64_t reduction) {
  double denom = 0.0;
  for (int64_t i = 0; i < num_rows; ++i) {
    const int64_t y = target[i];
    if (y == ignore_index) continue;
    TORCH_CHECK_VALUE(y >= 0 && y < num_classes, "target[", i, "] = ", y,
                      " is out of range: expected 0 <= target < ", num_classes,
                      " or target == ignore_index (", ignore_index, ")");
    denom += class_weight ? class_weight[y] : 1.0;
  }
  double w_total = static_cast<double>(num_classes);
  if (class_weight) {
    w_total = 0.0;
    for (int64_t j = 0; j < num_classes; ++j) w_total += class_weight[j];
  }
  // All rows ignored: 1 / 0 = inf, and the mean loss 0 / 0 = NaN, as in F.cross_entropy.
  const float grad_scale = reduction == kMean ? static_cast<float>(1.0 / denom) : 1.f;
  return {grad_scale, static_cast<float>(w_total), denom};
}

namespace {

std::tuple<at::Tensor, at::Tensor> ce_loss_aux_cpu(const at::Tensor& target_in,
                                                   const std::optional<at::Tensor>& class_weight,
                                                   int64_t num_classes, int64_t ignore_index, int64_t reduction) {
  check_ce_loss_aux_args(target_in, class_weight, num_classes, reduction);
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const CeLossAux a = ce_loss_aux_host(target.data_ptr<int64_t>(), target.numel(),
                                       class_weight ? class_weight->data_ptr<float>() : nullptr, num_classes,
                                       ignore_index, reduction);
  const auto f32 = target.options().dtype(at::kFloat);
  at::Tensor aux = at::empty({2}, f32);
  aux.data_ptr<float>()[0] = a.grad_scale;
  aux.data_ptr<float>()[1] = a.w_total;
  return {aux, at::scalar_tensor(a.denom, f32)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) { m.impl("ce_loss_aux", &ce_loss_aux_cpu); }

}  // namespace pycmlt
