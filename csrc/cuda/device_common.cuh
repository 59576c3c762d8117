// Device helpers shared by the CUDA kernels (nvcc only): dtype conversions, warp reductions and
// the math policy of the shared element functions in csrc/common.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

namespace pycmlt {
namespace cuda_detail {

constexpr int kWarp = 32;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Math policy of csrc/common/bce_math.h on the GPU (fast intrinsics under --use_fast_math).
struct CudaMath {
  __host__ __device__ static float exp(float x) { return expf(x); }
  __host__ __device__ static float log(float x) { return logf(x); }
  __host__ __device__ static float log1p_unit(float e, float /*inv_1pe*/) { return log1pf(e); }
};

}  // namespace cuda_detail
}  // namespace pycmlt
