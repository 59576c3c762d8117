// Torch glue of the CUDA class-balanced cross-entropy: checks, device-side reduction bookkeeping
// (ce_loss_aux_cuda: no host synchronisation), and the launch of the torch-free kernel in
// cb_cross_entropy_kernel.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/ce_glue.h"
#include "cuda/cb_cross_entropy_kernel.h"
#include "cuda/ce_loss_aux.h"
#include "cuda/cuda_check.h"
#include "cuda/torch_dtype.h"

namespace pycmlt {
namespace {

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
  const auto [aux, denom] = ce_loss_aux_cuda(target, class_weight, logits.size(1), ignore_index, reduction);
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
