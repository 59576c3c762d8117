// CUDA kernel of the alignment loss (docs/ops/alignment.md): one warp per row pair. A first sweep accumulates
// <a, a>, <b, b>, <a, b> and |a - b|^2 (fp32), the coefficients come from
// csrc/common/align_row_math.h (shared with the CPU kernel), a second sweep (mse after normalisation)
// accumulates |a^ - b^|^2 without cancellation, and a last sweep writes both gradients; the row is
// re-read from L1/L2, never from a second launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/align_row_math.h"
#include "cuda/alignment_kernel.h"
#include "cuda/device_common.cuh"

namespace pycmlt {
namespace {

using cuda_detail::from_float;
using cuda_detail::kWarp;
using cuda_detail::to_float;
using cuda_detail::warp_sum;
constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) alignment_kernel(AlignLaunch p) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= p.n) return;  // whole warps exit together
  const int64_t D = p.d;
  const T* a = static_cast<const T*>(p.a) + row * D;
  const T* b = static_cast<const T*>(p.b) + row * D;
  float aa = 0.f, bb = 0.f, ab = 0.f, dd = 0.f;
  for (int64_t k = lane; k < D; k += kWarp) {
    const float x = to_float(a[k]), y = to_float(b[k]);
    aa = fmaf(x, x, aa);
    bb = fmaf(y, y, bb);
    ab = fmaf(x, y, ab);
    dd = fmaf(x - y, x - y, dd);
  }
  aa = warp_sum(aa);
  bb = warp_sum(bb);
  ab = warp_sum(ab);
  dd = warp_sum(dd);
  const AlignRowCoefs c = align_row_coefs(aa, bb, ab, p.kind, p.normalize);
  float loss;
  if (p.kind == kAlignCosine) {
    loss = 1.f - c.c;
  } else if (!p.normalize) {
    loss = dd;
  } else {
    float d2 = 0.f;
    for (int64_t k = lane; k < D; k += kWarp) {
      const float e = c.ua * to_float(a[k]) - c.ub * to_float(b[k]);
      d2 = fmaf(e, e, d2);
    }
    loss = warp_sum(d2);
  }
  if (lane == 0) p.loss_rows[row] = loss;
  const float ca = p.grad_scale * c.alpha_a, cb = p.grad_scale * c.alpha_b, be = p.grad_scale * c.beta;
  T* ga = p.grad_a ? static_cast<T*>(p.grad_a) + row * D : nullptr;
  T* gb = p.grad_b ? static_cast<T*>(p.grad_b) + row * D : nullptr;
  if (!ga && !gb) return;
  for (int64_t k = lane; k < D; k += kWarp) {
    const float x = to_float(a[k]), y = to_float(b[k]);
    if (ga) ga[k] = from_float<T>(ca * x + be * y);
    if (gb) gb[k] = from_float<T>(cb * y + be * x);
  }
}

template <typename T>
cudaError_t launch_typed(const AlignLaunch& p) {
  const int64_t rows_per_block = kThreads / kWarp;
  const unsigned blocks = static_cast<unsigned>((p.n + rows_per_block - 1) / rows_per_block);
  alignment_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(p);
  return cudaGetLastError();
}

}  // namespace

int launch_alignment(const AlignLaunch& p) {
  if (p.n == 0) return 0;
  switch (p.dtype) {
    case DType::kFloat32: return static_cast<int>(launch_typed<float>(p));
    case DType::kFloat16: return static_cast<int>(launch_typed<__half>(p));
    case DType::kBFloat16: return static_cast<int>(launch_typed<__nv_bfloat16>(p));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace pycmlt
