// CUDA kernels of the class-balanced cross-entropy (docs/ops/cross_entropy.md). Forward computes the loss and
// writes the gradient in the same launch. Short rows (C <= 1024): one warp per row, the row held in
// registers (read once). Longer rows: one block per row with the row cached in shared memory when it
// fits (read once), otherwise an online max/sum sweep and a gradient sweep.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "cuda/cb_cross_entropy_kernel.h"
#include "cuda/cuda_check.h"
#include "cuda/device_common.cuh"

namespace pycmlt {
namespace {

using cuda_detail::from_float;
using cuda_detail::kWarp;
using cuda_detail::to_float;
using cuda_detail::warp_max;
using cuda_detail::warp_sum;

constexpr float kNegInf = -INFINITY;
constexpr int kBlockThreads = 512;

// Adds (m2, s2) into the running (max, sum of exp(z - max)) pair (m, s).
__device__ __forceinline__ void merge_lse(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == kNegInf) return;
  s = (m == kNegInf ? 0.f : s * __expf(m - mn)) + (m2 == kNegInf ? 0.f : s2 * __expf(m2 - mn));
  m = mn;
}

// z_j of the adjusted row: (x_j + bias_j - margin_y [j == y]) * scale.
template <typename T>
__device__ __forceinline__ float adjusted(const T* x, int64_t j, int64_t y, const CeOptions& o) {
  float z = to_float(x[j]);
  if (o.logit_bias) z += o.logit_bias[j];
  if (o.margins && j == y) z -= o.margins[y];
  return z * o.scale;
}

__device__ __forceinline__ float class_weight(const CeOptions& o, int64_t j) {
  return o.class_weight ? o.class_weight[j] : 1.f;
}

struct RowResult {
  bool skip;  // ignored (loss 0, gradient 0) or invalid target (loss NaN, gradient 0)
  float loss;
};

__device__ __forceinline__ RowResult classify_row(int64_t y, const CeOptions& o) {
  if (y == o.ignore_index) return {true, 0.f};
  if (y < 0 || y >= o.num_classes) return {true, NAN};
  return {false, 0.f};
}

// ---- one warp per row, the row in registers (C <= 32 * VPT)
template <typename T, int VPT>
__global__ void ce_warp_rows_kernel(CeLaunch a) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= a.num_rows) return;
  const CeOptions& o = a.opt;
  const int64_t C = o.num_classes;
  const T* x = static_cast<const T*>(a.logits) + row * a.row_stride;
  T* g = a.grad ? static_cast<T*>(a.grad) + row * a.grad_row_stride : nullptr;
  const int64_t y = a.target[row];
  const RowResult cls = classify_row(y, o);
  if (cls.skip) {
    if (lane == 0) a.loss_rows[row] = cls.loss;
    if (g)
      for (int64_t j = lane; j < C; j += kWarp) g[j] = from_float<T>(0.f);
    return;
  }
  // The target logit is read before any lane writes (grad may alias the logits).
  const float z_y = adjusted(x, y, y, o);
  float z[VPT];
  float mx = kNegInf, wz = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int64_t j = lane + static_cast<int64_t>(k) * kWarp;
    z[k] = j < C ? adjusted(x, j, y, o) : kNegInf;
    mx = fmaxf(mx, z[k]);
    if (o.label_smoothing > 0.f && j < C) wz += class_weight(o, j) * z[k];
  }
  mx = warp_max(mx);
  // As in PyTorch (x - max): a +inf or NaN max makes the row NaN; only an all -inf row shifts by 0.
  const float shift = mx == kNegInf ? 0.f : mx;
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    z[k] = __expf(z[k] - shift);
    sum += z[k];
  }
  sum = warp_sum(sum);
  wz = warp_sum(wz);
  const float lse = shift + __logf(sum);
  const float nll = lse - z_y;
  const CeRowCoefs k = ce_row_coefs(nll, lse, wz, class_weight(o, y), a.aux[1], o);
  if (lane == 0) a.loss_rows[row] = k.loss;
  if (!g) return;
  const float gs = a.aux[0] * o.scale;
  const float coef = gs * k.a / sum;
#pragma unroll
  for (int kk = 0; kk < VPT; ++kk) {
    const int64_t j = lane + static_cast<int64_t>(kk) * kWarp;
    if (j < C) {
      // b_class = 0 without smoothing: skip it, 0 * (a NaN weight of an unused class) would be NaN
      float v = coef * z[kk] - (k.b_class != 0.f ? gs * k.b_class * class_weight(o, j) : 0.f);
      if (j == y) v -= gs * k.b_target;
      g[j] = from_float<T>(v);
    }
  }
}

// Block-wide reduction of a (max, sum) pair; every thread gets the result.
__device__ __forceinline__ void block_merge_lse(float& m, float& s, float& wz) {
  __shared__ float sm[kWarp], ss[kWarp], sw[kWarp];
  for (int o = kWarp / 2; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge_lse(m, s, m2, s2);
    wz += __shfl_xor_sync(0xffffffffu, wz, o);
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int warps = blockDim.x / kWarp;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
    sw[warp] = wz;
  }
  __syncthreads();
  m = kNegInf;
  s = 0.f;
  wz = 0.f;
  for (int w = 0; w < warps; ++w) {
    merge_lse(m, s, sm[w], ss[w]);
    wz += sw[w];
  }
  __syncthreads();
}

// ---- one block per row; CACHE keeps the adjusted row in shared memory (read once)
template <typename T, bool CACHE>
__global__ void ce_block_rows_kernel(CeLaunch a) {
  extern __shared__ float row_cache[];
  const int64_t row = blockIdx.x;
  const CeOptions& o = a.opt;
  const int64_t C = o.num_classes;
  const T* x = static_cast<const T*>(a.logits) + row * a.row_stride;
  T* g = a.grad ? static_cast<T*>(a.grad) + row * a.grad_row_stride : nullptr;
  const int64_t y = a.target[row];
  const RowResult cls = classify_row(y, o);
  if (cls.skip) {
    if (threadIdx.x == 0) a.loss_rows[row] = cls.loss;
    if (g)
      for (int64_t j = threadIdx.x; j < C; j += blockDim.x) g[j] = from_float<T>(0.f);
    return;
  }
  // The target logit is read before any thread writes (grad may alias the logits).
  const float z_y = adjusted(x, y, y, o);
  float m = kNegInf, s = 0.f, wz = 0.f;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const float z = adjusted(x, j, y, o);
    if (CACHE) row_cache[j] = z;
    if (o.label_smoothing > 0.f) wz += class_weight(o, j) * z;
    merge_lse(m, s, z, 1.f);
    if (z != z) s = NAN;  // a NaN logit makes the row NaN, as in PyTorch
  }
  block_merge_lse(m, s, wz);
  // As in PyTorch (x - max): a +inf or NaN max makes the row (loss and gradient) NaN.
  const float shift = m == kNegInf ? 0.f : m;
  const float total = m == kNegInf ? 0.f : (isinf(m) ? NAN : s);
  const float lse = shift + __logf(total);
  const float nll = lse - z_y;
  const CeRowCoefs k = ce_row_coefs(nll, lse, wz, class_weight(o, y), a.aux[1], o);
  if (threadIdx.x == 0) a.loss_rows[row] = k.loss;
  if (!g) return;
  const float gs = a.aux[0] * o.scale;
  const float coef = gs * k.a / total;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const float z = CACHE ? row_cache[j] : adjusted(x, j, y, o);
    float v = coef * __expf(z - shift) - (k.b_class != 0.f ? gs * k.b_class * class_weight(o, j) : 0.f);
    if (j == y) v -= gs * k.b_target;
    g[j] = from_float<T>(v);
  }
}

template <typename T, int VPT>
cudaError_t launch_warp(const CeLaunch& a, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t rows_per_block = kThreads / kWarp;
  const unsigned blocks = static_cast<unsigned>((a.num_rows + rows_per_block - 1) / rows_per_block);
  ce_warp_rows_kernel<T, VPT><<<blocks, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const CeLaunch& a, cudaStream_t stream) {
  const int64_t C = a.opt.num_classes;
  if (C <= 32) return launch_warp<T, 1>(a, stream);
  if (C <= 64) return launch_warp<T, 2>(a, stream);
  if (C <= 128) return launch_warp<T, 4>(a, stream);
  if (C <= 256) return launch_warp<T, 8>(a, stream);
  if (C <= 512) return launch_warp<T, 16>(a, stream);
  if (C <= 1024) return launch_warp<T, 32>(a, stream);
  int device = 0, max_smem = 0;
  PYCMLT_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  PYCMLT_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t cache_bytes = static_cast<size_t>(C) * sizeof(float);
  const unsigned blocks = static_cast<unsigned>(a.num_rows);
  if (cache_bytes + 1024 <= static_cast<size_t>(max_smem)) {
    PYCMLT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(ce_block_rows_kernel<T, true>,
                                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     static_cast<int>(cache_bytes)));
    ce_block_rows_kernel<T, true><<<blocks, kBlockThreads, cache_bytes, stream>>>(a);
  } else {
    ce_block_rows_kernel<T, false><<<blocks, kBlockThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace

int launch_cb_cross_entropy(const CeLaunch& a) {
  if (a.num_rows == 0) return 0;
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  switch (a.dtype) {
    case DType::kFloat32:
      return static_cast<int>(launch_typed<float>(a, stream));
    case DType::kFloat16:
      return static_cast<int>(launch_typed<__half>(a, stream));
    case DType::kBFloat16:
      return static_cast<int>(launch_typed<__nv_bfloat16>(a, stream));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace pycmlt
