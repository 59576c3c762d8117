// Torch glue of the CUDA class-balanced BCE: checks, launch of the torch-free kernel in
// cb_bce_kernel.cu, and the reduction of its partial sums on the device (no host synchronisation).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/common.h"
#include "cuda/cb_bce_kernel.h"
#include "cuda/cuda_check.h"
#include "cuda/torch_dtype.h"

namespace pycmlt {
namespace {

// Pointer and (row, column) strides of a [1 or N, 1 or C] fp32 weight broadcast over [N, C].
const float* broadcast_arg(const std::optional<at::Tensor>& t, const at::Tensor& logits, const char* name,
                           int64_t& rs, int64_t& cs) {
  rs = cs = 0;
  if (!t.has_value()) return nullptr;
  const int64_t N = logits.size(0), C = logits.size(1);
  TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->dim() == 2 && t->is_contiguous() &&
                        t->device() == logits.device(),
                    name, " must be a contiguous float32 tensor [rows, cols] on ", logits.device());
  TORCH_CHECK_VALUE((t->size(0) == 1 || t->size(0) == N) && (t->size(1) == 1 || t->size(1) == C), name,
                    " must have shape [1 or ", N, ", 1 or ", C, "], got ", t->sizes());
  rs = t->size(0) > 1 ? t->size(1) : 0;
  cs = t->size(1) > 1 ? 1 : 0;
  return t->data_ptr<float>();
}

BceLaunch make_launch(const at::Tensor& logits, const at::Tensor& targets, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& pos_weight, double focal_gamma, double grad_scale) {
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be 2-D [N, C], got shape ", logits.sizes());
  TORCH_CHECK_VALUE(targets.sizes() == logits.sizes(), "targets must have the shape of logits ", logits.sizes(),
                    ", got ", targets.sizes());
  TORCH_CHECK_VALUE(targets.device() == logits.device(), "targets is on ", targets.device(), " but logits is on ",
                    logits.device());
  TORCH_CHECK_TYPE(targets.scalar_type() == logits.scalar_type() || targets.scalar_type() == at::kFloat,
                   "targets must be float32 or logits' dtype (", logits.scalar_type(), "), got ",
                   targets.scalar_type());
  BceLaunch a{};
  a.logits = logits.data_ptr();
  a.targets = targets.data_ptr();
  a.targets_fp32 = targets.scalar_type() == at::kFloat;
  a.num_rows = logits.size(0);
  a.num_cols = logits.size(1);
  a.weight = broadcast_arg(weight, logits, "weight", a.weight_rs, a.weight_cs);
  a.pos_weight = broadcast_arg(pos_weight, logits, "pos_weight", a.pos_weight_rs, a.pos_weight_cs);
  a.focal_gamma = static_cast<float>(focal_gamma);
  a.grad_scale = static_cast<float>(grad_scale);
  a.dtype = kernel_dtype(logits, "logits");
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  return a;
}

std::tuple<at::Tensor, at::Tensor> cb_bce_cuda(const at::Tensor& logits_in, const at::Tensor& targets_in,
                                               const std::optional<at::Tensor>& weight,
                                               const std::optional<at::Tensor>& pos_weight, double focal_gamma,
                                               int64_t reduction, bool compute_grad) {
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2");
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor targets = targets_in.contiguous();
  const int64_t count = logits.numel();
  const double grad_scale = (reduction == kMean && count > 0) ? 1.0 / static_cast<double>(count) : 1.0;
  BceLaunch a = make_launch(logits, targets, weight, pos_weight, focal_gamma, grad_scale);
  const int64_t N = logits.size(0), C = logits.size(1);
  a.elementwise = reduction == kNone;
  at::Tensor loss = at::empty({a.elementwise ? count : bce_grid_blocks(count)}, logits.options().dtype(at::kFloat));
  at::Tensor grad = compute_grad ? at::empty({N, C}, logits.options()) : at::empty({0}, logits.options());
  a.loss = loss.data_ptr<float>();
  a.grad = compute_grad ? grad.data_ptr() : nullptr;
  if (count > 0) {
    PYCMLT_CHECK_CUDA(launch_cb_bce(a), "cb_bce");
  } else if (!a.elementwise) {
    loss.zero_();
  }
  if (reduction == kNone) return {loss.view({N, C}), grad};
  const at::Tensor total = loss.sum();
  return {reduction == kMean ? total.div(static_cast<double>(count)) : total, grad};
}

at::Tensor cb_bce_grad_inplace_cuda(const at::Tensor& logits, const at::Tensor& targets_in,
                                    const std::optional<at::Tensor>& weight,
                                    const std::optional<at::Tensor>& pos_weight, double focal_gamma,
                                    double grad_scale) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.is_contiguous(), "logits must be a contiguous 2-D [N, C] buffer");
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor targets = targets_in.contiguous();
  BceLaunch a = make_launch(logits, targets, weight, pos_weight, focal_gamma, grad_scale);
  const int64_t count = logits.numel();
  a.elementwise = false;
  at::Tensor partial = at::zeros({bce_grid_blocks(count)}, logits.options().dtype(at::kFloat));
  a.loss = partial.data_ptr<float>();
  a.grad = logits.data_ptr();
  if (count > 0) {
    PYCMLT_CHECK_CUDA(launch_cb_bce(a), "cb_bce_grad_inplace");
  }
  return partial.sum();
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) {
  m.impl("cb_bce", &cb_bce_cuda);
  m.impl("cb_bce_grad_inplace", &cb_bce_grad_inplace_cuda);
}

}  // namespace pycmlt
