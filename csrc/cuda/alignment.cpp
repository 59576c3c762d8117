// Torch glue of the CUDA alignment kernel: checks, outputs, the launch of alignment_kernel.cu and the
// reduction (on the device, no host synchronisation).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/ce_row_math.h"
#include "cuda/alignment_kernel.h"
#include "cuda/cuda_check.h"
#include "cuda/torch_dtype.h"

namespace pycmlt {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> alignment_cuda(const at::Tensor& a_in, const at::Tensor& b_in,
                                                              int64_t kind, bool normalize, int64_t reduction,
                                                              bool grad_a, bool grad_b) {
  TORCH_CHECK_VALUE(a_in.dim() == 2 && a_in.sizes() == b_in.sizes(), "a and b must be 2-D of the same shape, got ",
                    a_in.sizes(), " and ", b_in.sizes());
  TORCH_CHECK_TYPE(a_in.scalar_type() == b_in.scalar_type(), "a and b must have the same dtype");
  TORCH_CHECK_VALUE(b_in.device() == a_in.device(), "b is on ", b_in.device(), " but a is on ", a_in.device());
  TORCH_CHECK_VALUE(kind == 0 || kind == 1, "kind code must be 0 (cosine) or 1 (mse)");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t N = a.size(0), D = a.size(1);
  at::Tensor loss_rows = at::empty({N}, a.options().dtype(at::kFloat));
  at::Tensor ga = grad_a ? at::empty({N, D}, a.options()) : at::empty({0}, a.options());
  at::Tensor gb = grad_b ? at::empty({N, D}, a.options()) : at::empty({0}, a.options());
  AlignLaunch p{};
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.n = N;
  p.d = D;
  p.kind = kind;
  p.normalize = normalize;
  p.grad_scale = reduction == kMean ? (N > 0 ? 1.f / static_cast<float>(N) : 0.f) : 1.f;
  p.loss_rows = loss_rows.data_ptr<float>();
  p.grad_a = grad_a ? ga.data_ptr() : nullptr;
  p.grad_b = grad_b ? gb.data_ptr() : nullptr;
  p.dtype = kernel_dtype(a, "a");
  p.stream = c10::cuda::getCurrentCUDAStream().stream();
  PYCMLT_CHECK_CUDA(launch_alignment(p), "alignment");
  if (reduction == kNone) return {loss_rows, ga, gb};
  const at::Tensor total = loss_rows.sum();
  return {reduction == kMean ? total.div(static_cast<double>(N)) : total, ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) { m.impl("alignment", &alignment_cuda); }

}  // namespace pycmlt
