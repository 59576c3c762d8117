// Branch-free float maths that GCC/Clang auto-vectorise inside `#pragma omp simd` loops, and the
// attribute that compiles a hot function for AVX-512, AVX2 and baseline x86 with run-time dispatch.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYCMLT_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PYCMLT_MULTIVERSION
#endif
#define PYCMLT_ALWAYS_INLINE inline __attribute__((always_inline))

namespace pycmlt {

// expf with ~1 ulp error (Cephes polynomial); exp(x) = 0 below -87.3, +inf above 88.7, NaN -> NaN.
PYCMLT_ALWAYS_INLINE float fast_expf(float x) {
  float xc = x > 88.0f ? 88.0f : x;
  xc = xc < -87.0f ? -87.0f : xc;
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(float));
  const float y = p * two_n;
  return x < -87.3f ? 0.0f : (x > 88.72f ? std::numeric_limits<float>::infinity() : y);
}

}  // namespace pycmlt
