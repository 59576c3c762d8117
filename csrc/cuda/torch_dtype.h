// Torch glue shared by the CUDA ops: the kernels' DType of a tensor (host compiler only).
#pragma once
#include <ATen/ATen.h>

#include "cuda/launch_common.h"

namespace pycmlt {

// The kernel dtype of `t`; a TypeError naming `what` for anything but float32/float16/bfloat16.
inline DType kernel_dtype(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK_TYPE(false, what, " must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

}  // namespace pycmlt
