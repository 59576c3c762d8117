// CUDA kernel of pycmlt::ce_loss_aux, also called directly by the CUDA cb_cross_entropy glue.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace pycmlt {

// (aux = [gradient scale, sum of class weights] fp32 [2], the mean's denominator fp32 []) on the
// target's device, from ATen ops on the device: no host synchronisation, hence no target check.
std::tuple<at::Tensor, at::Tensor> ce_loss_aux_cuda(const at::Tensor& target,
                                                    const std::optional<at::Tensor>& class_weight,
                                                    int64_t num_classes, int64_t ignore_index, int64_t reduction);

}  // namespace pycmlt
