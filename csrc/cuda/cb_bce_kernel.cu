// CUDA kernel of the class-balanced sigmoid BCE (docs/ops/bce.md): one grid-stride element-wise pass
// computes each element's loss and writes its gradient (so backward never reads the logits
// again); the losses are stored per element or reduced to one partial sum per block.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/bce_math.h"
#include "cuda/cb_bce_kernel.h"
#include "cuda/device_common.cuh"

namespace pycmlt {
namespace {

using cuda_detail::CudaMath;
using cuda_detail::from_float;
using cuda_detail::kWarp;
using cuda_detail::to_float;
using cuda_detail::warp_sum;

template <typename T, typename U, int FOCAL>
__global__ void __launch_bounds__(kBceThreads) bce_kernel(BceLaunch a) {
  const int64_t C = a.num_cols;
  const int64_t total = a.num_rows * C;
  const T* x = static_cast<const T*>(a.logits);
  const U* t = static_cast<const U*>(a.targets);
  T* g = static_cast<T*>(a.grad);
  float acc = 0.f;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t r = i / C;
    const int64_t c = i - r * C;
    const float w = a.weight ? a.weight[r * a.weight_rs + c * a.weight_cs] : 1.f;
    const float pw = a.pos_weight ? a.pos_weight[r * a.pos_weight_rs + c * a.pos_weight_cs] : 1.f;
    const BceElem e = bce_elem<CudaMath, FOCAL>(to_float(x[i]), to_float(t[i]), w, pw, a.focal_gamma);
    if (a.elementwise) {
      a.loss[i] = e.loss;
    } else {
      acc += e.loss;
    }
    if (g) g[i] = from_float<T>(e.grad * a.grad_scale);  // same element as the read above: safe in place
  }
  if (a.elementwise) return;
  __shared__ float partial[kBceThreads / kWarp];
  acc = warp_sum(acc);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) partial[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float block = 0.f;
    for (int k = 0; k < kBceThreads / kWarp; ++k) block += partial[k];
    a.loss[blockIdx.x] = block;
  }
}

template <typename T, typename U>
cudaError_t launch_typed(const BceLaunch& a, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(bce_grid_blocks(a.num_rows * a.num_cols));
  switch (bce_focal_mode(a.focal_gamma)) {
    case kBceFocalSquare:
      bce_kernel<T, U, kBceFocalSquare><<<blocks, kBceThreads, 0, stream>>>(a);
      break;
    case kBceFocalPow:
      bce_kernel<T, U, kBceFocalPow><<<blocks, kBceThreads, 0, stream>>>(a);
      break;
    default:
      bce_kernel<T, U, kBceNoFocal><<<blocks, kBceThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace

int launch_cb_bce(const BceLaunch& a) {
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  switch (a.dtype) {
    case DType::kFloat32:
      return static_cast<int>(launch_typed<float, float>(a, stream));
    case DType::kFloat16:
      return static_cast<int>(a.targets_fp32 ? launch_typed<__half, float>(a, stream)
                                             : launch_typed<__half, __half>(a, stream));
    case DType::kBFloat16:
      return static_cast<int>(a.targets_fp32 ? launch_typed<__nv_bfloat16, float>(a, stream)
                                             : launch_typed<__nv_bfloat16, __nv_bfloat16>(a, stream));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace pycmlt
