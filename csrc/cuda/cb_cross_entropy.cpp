// Torch glue of the CUDA class-balanced cross-entropy: checks, device-side reduction bookkeeping
// (no host synchronisation), and the launch of the torch-free kernel in cb_cross_entropy_kernel.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/ce_glue.h"
#include "cuda/cb_cross_entropy_kernel.h"
#include "cuda/cuda_check.h"
#include "cuda/torch_dtype.h"

namespace pycmlt {
namespace {

// [gradient scale, sum of class weights] and the mean's denominator, on the device (no .item()).
std::tuple<at::Tensor, at::Tensor> device_aux(const at::Tensor& logits, const at::Tensor& target,
                                              const std::optional<at::Tensor>& class_weight, int64_t ignore_index,
                                              int64_t reduction) {
  const int64_t C = logits.size(1);
  const at::Tensor counted = target.ne(ignore_index);
  const at::Tensor in_range = counted.logical_and(target.ge(0)).logical_and(target.lt(C));
  const at::Tensor safe = at::where(in_range, target, at::zeros_like(target));
  at::Tensor w_y, w_total;
  if (class_weight.has_value()) {
    w_y = at::where(counted, class_weight->index_select(0, safe), at::zeros({}, class_weight->options()));
    w_total = class_weight->sum();
  } else {
    w_y = counted.to(at::kFloat);
    w_total = at::full({}, static_cast<double>(C), logits.options().dtype(at::kFloat));
  }
  const at::Tensor denom = w_y.sum();
  const at::Tensor grad_scale = reduction == kMean ? denom.reciprocal() : at::ones_like(denom);
  return {at::stack({grad_scale.to(at::kFloat), w_total.to(at::kFloat)}).contiguous(), denom};
}

// Launches the row kernel on `logits` (unit column stride): per-row losses into a new [N] tensor and,
// when `grad` is defined, aux[0] * d loss / d logits into it (which may be `logits` itself).
at::Tensor launch_rows(const at::Tensor& logits, const at::Tensor& target, const CeOptions& opt,
                       const at::Tensor& aux, const at::Tensor* grad, const char* op_name) {
  CeLaunch a{};
  a.logits = logits.data_ptr();
  a.row_stride = logits.stride(0);
  a.target = target.data_ptr<int64_t>();
  a.num_rows = logits.size(0);
  a.opt = opt;
  a.dtype = kernel_dtype(logits, "logits");
  a.aux = aux.data_ptr<float>();
  at::Tensor loss_rows = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  a.loss_rows = loss_rows.data_ptr<float>();
  a.grad = grad ? grad->data_ptr() : nullptr;
  a.grad_row_stride = grad ? grad->stride(0) : 0;
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  PYCMLT_CHECK_CUDA(launch_cb_cross_entropy(a), op_name);
  return loss_rows;
}

std::tuple<at::Tensor, at::Tensor> cb_cross_entropy_cuda(
    const at::Tensor& logits_in, const at::Tensor& target_in,
    const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& margins,
    const std::optional<at::Tensor>& logit_bias, double scale, double focal_gamma,
    double label_smoothing, int64_t ignore_index, int64_t reduction, bool compute_grad) {
  check_ce_args(logits_in, target_in, reduction);
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.stride(-1) == 1 ? logits_in : logits_in.contiguous();
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const CeOptions opt = make_ce_options(logits, class_weight, margins, logit_bias, scale, focal_gamma,
                                        label_smoothing, ignore_index);
  const auto [aux, denom] = device_aux(logits, target, class_weight, ignore_index, reduction);
  const at::Tensor grad = compute_grad ? at::empty(logits.sizes(), logits.options()) : at::empty({0}, logits.options());
  const at::Tensor loss_rows = launch_rows(logits, target, opt, aux, compute_grad ? &grad : nullptr,
                                           "cb_cross_entropy");
  if (reduction == kNone) return {loss_rows, grad};
  const at::Tensor total = loss_rows.sum();
  return {reduction == kMean ? total.div(denom) : total, grad};
}

// In-place variant for the chunked fused linear + loss: logits <- aux[0] * d loss / d logits;
// returns the per-row losses. aux is computed by the caller over the whole batch.
at::Tensor cb_cross_entropy_grad_inplace_cuda(
    const at::Tensor& logits, const at::Tensor& target_in, const std::optional<at::Tensor>& class_weight,
    const std::optional<at::Tensor>& margins, const std::optional<at::Tensor>& logit_bias, const at::Tensor& aux,
    double scale, double focal_gamma, double label_smoothing, int64_t ignore_index) {
  check_ce_inplace_args(logits, target_in, aux);
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const CeOptions opt = make_ce_options(logits, class_weight, margins, logit_bias, scale, focal_gamma,
                                        label_smoothing, ignore_index);
  return launch_rows(logits, target, opt, aux.contiguous(), &logits, "cb_cross_entropy_grad_inplace");
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) {
  m.impl("cb_cross_entropy", &cb_cross_entropy_cuda);
  m.impl("cb_cross_entropy_grad_inplace", &cb_cross_entropy_grad_inplace_cuda);
}

}  // namespace pycmlt
