// Torch glue shared by the CPU and CUDA cross-entropy ops: argument checks and the CeOptions of a
// call. Host compiler only (the kernels themselves stay torch-free).
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "common/ce_row_math.h"

namespace pycmlt {

// Data pointer of an optional per-class tensor: contiguous float32 [C] on the logits' device.
inline const float* per_class_ptr(const std::optional<at::Tensor>& t, const at::Tensor& logits, const char* name) {
  if (!t.has_value()) return nullptr;
  const int64_t C = logits.size(1);
  TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->dim() == 1 && t->numel() == C && t->is_contiguous() &&
                        t->device() == logits.device(),
                    name, " must be a contiguous float32 tensor of shape [", C, "] on ", logits.device());
  return t->data_ptr<float>();
}

inline CeOptions make_ce_options(const at::Tensor& logits, const std::optional<at::Tensor>& class_weight,
                                 const std::optional<at::Tensor>& margins,
                                 const std::optional<at::Tensor>& logit_bias, double scale, double focal_gamma,
                                 double label_smoothing, int64_t ignore_index) {
  CeOptions o;
  o.class_weight = per_class_ptr(class_weight, logits, "class_weight");
  o.margins = per_class_ptr(margins, logits, "margins");
  o.logit_bias = per_class_ptr(logit_bias, logits, "logit_bias");
  o.scale = static_cast<float>(scale);
  o.focal_gamma = static_cast<float>(focal_gamma);
  o.label_smoothing = static_cast<float>(label_smoothing);
  o.ignore_index = ignore_index;
  o.num_classes = logits.size(1);
  return o;
}

// pycmlt::cb_cross_entropy: logits [N, C], target [N] on the same device, a valid reduction code.
inline void check_ce_args(const at::Tensor& logits, const at::Tensor& target, int64_t reduction) {
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be 2-D [N, C], got shape ", logits.sizes());
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == logits.size(0), "target must have shape [",
                    logits.size(0), "], got ", target.sizes());
  TORCH_CHECK_VALUE(target.device() == logits.device(), "target is on ", target.device(), " but logits is on ",
                    logits.device());
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2, got ", reduction);
}

// pycmlt::cb_cross_entropy_grad_inplace: a writable [N, C] buffer with unit column stride, target [N]
// and aux = [gradient scale, sum of class weights] (float32) on its device.
inline void check_ce_inplace_args(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& aux) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.stride(1) == 1,
                    "logits must be a 2-D [N, C] buffer with unit column stride, got shape ", logits.sizes(),
                    " strides ", logits.strides());
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == logits.size(0), "target must have shape [",
                    logits.size(0), "], got ", target.sizes());
  TORCH_CHECK_VALUE(target.device() == logits.device() && aux.device() == logits.device(),
                    "target and aux must be on ", logits.device());
  TORCH_CHECK_VALUE(aux.scalar_type() == at::kFloat && aux.numel() == 2,
                    "aux must be a float32 tensor [gradient scale, sum of class weights]");
}

// pycmlt::ce_loss_aux: integer target [N], class_weight contiguous float32 [num_classes] on its device.
inline void check_ce_loss_aux_args(const at::Tensor& target, const std::optional<at::Tensor>& class_weight,
                                   int64_t num_classes, int64_t reduction) {
  TORCH_CHECK_VALUE(target.dim() == 1 && at::isIntegralType(target.scalar_type(), /*includeBool=*/false),
                    "target must be a 1-D integer tensor, got ", target.scalar_type(), " of shape ",
                    target.sizes());
  TORCH_CHECK_VALUE(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2, got ", reduction);
  if (class_weight.has_value()) {
    const at::Tensor& w = *class_weight;
    TORCH_CHECK_VALUE(w.scalar_type() == at::kFloat && w.dim() == 1 && w.numel() == num_classes &&
                          w.is_contiguous() && w.device() == target.device(),
                      "class_weight must be a contiguous float32 tensor of shape [", num_classes, "] on ",
                      target.device());
  }
}

}  // namespace pycmlt
