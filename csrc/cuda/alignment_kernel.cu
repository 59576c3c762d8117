// CUDA kernel of the alignment loss (DESIGN 2.4): one warp per row pair. A first sweep accumulates
// <a, a>, <b, b>, <a, b> and |a - b|^2 (fp32), the coefficients come from
// csrc/common/align_row_math.h (shared with the CPU kernel), a second sweep (mse after normalisation)
// accumulates |a^ - b^|^2 without cancellation, and a last sweep writes both gradients; the row is
// re-read from L1/L2, never from a second launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/align_row_math.h"
#include "cuda/alignment_kernel.h"

namespace pycmlt {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

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
    const float x = to_f(a[k]), y = to_f(b[k]);
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
      const float e = c.ua * to_f(a[k]) - c.ub * to_f(b[k]);
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
    const float x = to_f(a[k]), y = to_f(b[k]);
    if (ga) ga[k] = from_f<T>(ca * x + be * y);
    if (gb) gb[k] = from_f<T>(cb * y + be * x);
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
