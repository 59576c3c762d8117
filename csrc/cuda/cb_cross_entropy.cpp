// Torch glue of the CUDA class-balanced cross-entropy: checks, device-side reduction bookkeeping
// (no host synchronisation), and the launch of the torch-free kernel in cb_cross_entropy_kernel.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/cb_cross_entropy_kernel.h"

namespace pycmlt {
namespace {

const float* device_ptr(const std::optional<at::Tensor>& t, const at::Tensor& logits, const char* name) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->dim() == 1 && t->numel() == logits.size(1) &&
                        t->is_contiguous() && t->device() == logits.device(),
                    name, " must be a contiguous float32 tensor of shape [", logits.size(1), "] on ",
                    logits.device());
  return t->data_ptr<float>();
}

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK_TYPE(false, "logits must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

CeOptions make_options(const at::Tensor& logits, const std::optional<at::Tensor>& class_weight,
                       const std::optional<at::Tensor>& margins, const std::optional<at::Tensor>& logit_bias,
                       double scale, double focal_gamma, double label_smoothing, int64_t ignore_index) {
  CeOptions o;
  o.class_weight = device_ptr(class_weight, logits, "class_weight");
  o.margins = device_ptr(margins, logits, "margins");
  o.logit_bias = device_ptr(logit_bias, logits, "logit_bias");
  o.scale = static_cast<float>(scale);
  o.focal_gamma = static_cast<float>(focal_gamma);
  o.label_smoothing = static_cast<float>(label_smoothing);
  o.ignore_index = ignore_index;
  o.num_classes = logits.size(1);
  return o;
}

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

std::tuple<at::Tensor, at::Tensor> cb_cross_entropy_cuda(
    const at::Tensor& logits_in, const at::Tensor& target_in,
    const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& margins,
    const std::optional<at::Tensor>& logit_bias, double scale, double focal_gamma,
    double label_smoothing, int64_t ignore_index, int64_t reduction, bool compute_grad) {
  TORCH_CHECK_VALUE(logits_in.dim() == 2, "logits must be 2-D [N, C], got shape ", logits_in.sizes());
  TORCH_CHECK_VALUE(target_in.dim() == 1 && target_in.size(0) == logits_in.size(0),
                    "target must have shape [", logits_in.size(0), "], got ", target_in.sizes());
  TORCH_CHECK_VALUE(target_in.device() == logits_in.device(), "target is on ", target_in.device(),
                    " but logits is on ", logits_in.device());
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.stride(-1) == 1 ? logits_in : logits_in.contiguous();
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);

  CeLaunch a{};
  a.logits = logits.data_ptr();
  a.row_stride = logits.stride(0);
  a.target = target.data_ptr<int64_t>();
  a.num_rows = N;
  a.opt = make_options(logits, class_weight, margins, logit_bias, scale, focal_gamma, label_smoothing,
                       ignore_index);
  a.dtype = dtype_of(logits);
  const auto [aux, denom] = device_aux(logits, target, class_weight, ignore_index, reduction);
  a.aux = aux.data_ptr<float>();

  at::Tensor loss_rows = at::empty({N}, logits.options().dtype(at::kFloat));
  at::Tensor grad = compute_grad ? at::empty({N, C}, logits.options()) : at::empty({0}, logits.options());
  a.loss_rows = loss_rows.data_ptr<float>();
  a.grad = compute_grad ? grad.data_ptr() : nullptr;
  a.grad_row_stride = C;
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  const int err = launch_cb_cross_entropy(a);
  TORCH_CHECK(err == 0, "pycmlt cb_cross_entropy CUDA launch failed with cudaError ", err);

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
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.stride(1) == 1,
                    "logits must be a 2-D [N, C] buffer with unit column stride, got shape ", logits.sizes(),
                    " strides ", logits.strides());
  TORCH_CHECK_VALUE(target_in.dim() == 1 && target_in.size(0) == logits.size(0),
                    "target must have shape [", logits.size(0), "], got ", target_in.sizes());
  TORCH_CHECK_VALUE(target_in.device() == logits.device() && aux.device() == logits.device(),
                    "target and aux must be on ", logits.device());
  TORCH_CHECK_VALUE(aux.scalar_type() == at::kFloat && aux.numel() == 2,
                    "aux must be a float32 tensor [gradient scale, sum of class weights]");
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const at::Tensor aux_c = aux.contiguous();
  const int64_t N = logits.size(0);

  CeLaunch a{};
  a.logits = logits.data_ptr();
  a.row_stride = logits.stride(0);
  a.target = target.data_ptr<int64_t>();
  a.num_rows = N;
  a.opt = make_options(logits, class_weight, margins, logit_bias, scale, focal_gamma, label_smoothing,
                       ignore_index);
  a.dtype = dtype_of(logits);
  a.aux = aux_c.data_ptr<float>();
  at::Tensor loss_rows = at::empty({N}, logits.options().dtype(at::kFloat));
  a.loss_rows = loss_rows.data_ptr<float>();
  a.grad = logits.data_ptr();
  a.grad_row_stride = logits.stride(0);
  a.stream = c10::cuda::getCurrentCUDAStream().stream();
  const int err = launch_cb_cross_entropy(a);
  TORCH_CHECK(err == 0, "pycmlt cb_cross_entropy_grad_inplace CUDA launch failed with cudaError ", err);
  return loss_rows;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) {
  m.impl("cb_cross_entropy", &cb_cross_entropy_cuda);
  m.impl("cb_cross_entropy_grad_inplace", &cb_cross_entropy_grad_inplace_cuda);
}

}  // namespace pycmlt
