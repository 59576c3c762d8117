// Definitions every kernel shares (CPU and CUDA): the host/device function qualifier and the
// reduction codes.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYCMLT_HD __host__ __device__ __forceinline__
#else
#define PYCMLT_HD inline __attribute__((always_inline))
#endif

namespace pycmlt {

// Reduction codes used by every op (same values as at::Reduction).
enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

}  // namespace pycmlt
