// Branch-free float maths that GCC/Clang auto-vectorise inside `#pragma omp simd` loops, and the
// attribute that compiles a hot function for AVX-512, AVX2 and baseline x86 with run-time dispatch.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

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

// exp(r) - 1 for |r| <= log(2) / 2 (Cephes expf polynomial without its leading 1): the shared core of
// fast_expf (after range reduction) and fast_expm1f (small arguments keep their digits).
PYCMLT_ALWAYS_INLINE float expm1_reduced(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r;
}

// expf with ~1 ulp error (Cephes polynomial); exp(x) = 0 below -87.3, +inf above 88.7, NaN -> NaN.
PYCMLT_ALWAYS_INLINE float fast_expf(float x) {
  float xc = x > 88.0f ? 88.0f : x;
  xc = xc < -87.0f ? -87.0f : xc;
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float p = expm1_reduced(r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(float));
  const float y = p * two_n;
  return x < -87.3f ? 0.0f : (x > 88.72f ? std::numeric_limits<float>::infinity() : y);
}

// expm1 with a few ulp error: for |x| < log(2) / 2 (where fast_expf's reduction is exact, n = 0, r = x)
// its polynomial without the leading 1, so that small results keep their digits; exp(x) - 1 elsewhere.
PYCMLT_ALWAYS_INLINE float fast_expm1f(float x) {
  const float small = expm1_reduced(x);
  return std::fabs(x) < 0.34657359f ? small : fast_expf(x) - 1.0f;
}

// log(1 + r) + e * log(2) for r in [sqrt(1/2) - 1, sqrt(2) - 1] (Cephes logf polynomial, log(2)
// split into a coarse and a fine part): the shared core of fast_logf and fast_log_1_2.
PYCMLT_ALWAYS_INLINE float log_reduced(float r, float e) {
  const float z = r * r;
  float y = 7.0376836292e-2f;
  y = y * r - 1.1514610310e-1f;
  y = y * r + 1.1676998740e-1f;
  y = y * r - 1.2420140846e-1f;
  y = y * r + 1.4249322787e-1f;
  y = y * r - 1.6668057665e-1f;
  y = y * r + 2.0000714765e-1f;
  y = y * r - 2.4999993993e-1f;
  y = y * r + 3.3333331174e-1f;
  y = y * r * z;
  y = y - 2.12194440e-4f * e;
  y = y - 0.5f * z;
  return r + y + 0.693359375f * e;
}

// logf with ~1 ulp error (Cephes polynomial), branch-free so it vectorises; handles denormals,
// log(0) = -inf, log(+inf) = +inf, log(x < 0) = NaN, NaN -> NaN.
PYCMLT_ALWAYS_INLINE float fast_logf(float x) {
  const bool denormal = x < 1.17549435e-38f;
  const float xs = denormal ? x * 8388608.0f : x;  // * 2^23 lifts denormals into the normal range
  int32_t bits;
  std::memcpy(&bits, &xs, sizeof(float));
  const float e0 = static_cast<float>(((bits >> 23) & 0xff) - 126) - (denormal ? 23.0f : 0.0f);
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa m in [0.5, 1)
  float m;
  std::memcpy(&m, &bits, sizeof(float));
  const bool small = m < 0.707106781186547524f;
  const float e = small ? e0 - 1.0f : e0;
  const float r = small ? m + m - 1.0f : m - 1.0f;
  float res = log_reduced(r, e);
  // Special values, one plain select each (so that the loop stays vectorisable).
  const float inf = std::numeric_limits<float>::infinity();
  res = x == inf ? inf : res;
  res = x == 0.0f ? -inf : res;
  res = x < 0.0f ? std::numeric_limits<float>::quiet_NaN() : res;
  res = x != x ? x : res;
  return res;
}

// log(u) for u in [1, 2] (finite, normal): the fast_logf polynomial without the special cases.
PYCMLT_ALWAYS_INLINE float fast_log_1_2(float u) {
  const bool big = u > 1.41421356237309505f;
  const float m = big ? u * 0.5f : u;  // m in [0.707, 1.414], u = m * 2^e
  const float e = big ? 1.0f : 0.0f;
  const float r = m - 1.0f;
  return log_reduced(r, e);
}

// log(1 + e) for e in [0, 1] without losing the small-e digits: log(u) + (e - (u - 1)) / u with
// u = 1 + e rounded; inv_u = 1 / (1 + e) is passed in by callers that have it already.
PYCMLT_ALWAYS_INLINE float fast_log1p_unit(float e, float inv_u) {
  const float u = 1.0f + e;
  return fast_log_1_2(u) + (e - (u - 1.0f)) * inv_u;
}

// x^y for x >= 0 as exp(y log x), branch-free (~1e-6 relative error for |y log x| < 10); x = 0 gives 0 for
// y > 0 and +inf for y < 0, but NaN for y = 0 (callers select that case away).
PYCMLT_ALWAYS_INLINE float fast_pow_nonneg(float x, float y) { return fast_expf(y * fast_logf(x)); }

// Loads and stores of the kernels' element types as branch-free bit operations, so that the loops that
// convert stay vectorised (c10's conversions did not vectorise there: bf16 rows ran 2.6-3.7x and fp16
// rows 5-7x slower than fp32 ones). Exact: bf16/fp16 -> float widen; float -> bf16/fp16 rounds to
// nearest even, NaN -> the quiet NaN c10 gives (0x7fc0 bf16; 0x7e00 with the sign kept for fp16).
PYCMLT_ALWAYS_INLINE float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(float));
  return f;
}
PYCMLT_ALWAYS_INLINE uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(float));
  return bits;
}

PYCMLT_ALWAYS_INLINE float load_float(float v) { return v; }
PYCMLT_ALWAYS_INLINE float load_float(c10::BFloat16 v) { return bits_to_float(static_cast<uint32_t>(v.x) << 16); }
PYCMLT_ALWAYS_INLINE float load_float(c10::Half v) {
  const uint32_t em = static_cast<uint32_t>(v.x & 0x7fffu) << 13;  // exponent and mantissa at float's place
  const uint32_t exp = em & 0x0f800000u;
  uint32_t bits = em + (112u << 23);                          // exponent bias 15 -> 127
  bits = exp == 0x0f800000u ? bits + (112u << 23) : bits;      // inf / NaN: exponent 255
  // Subnormal halves: 2^-14 (1 + m / 1024) - 2^-14 = m 2^-24, exact (no subnormal float is formed).
  const uint32_t subnormal = float_to_bits(bits_to_float(em + (113u << 23)) - 6.103515625e-05f);
  bits = exp == 0 ? subnormal : bits;
  return bits_to_float(bits | (static_cast<uint32_t>(v.x & 0x8000u) << 16));
}

template <typename T>
PYCMLT_ALWAYS_INLINE T store_as(float v);
template <>
PYCMLT_ALWAYS_INLINE float store_as<float>(float v) {
  return v;
}
template <>
PYCMLT_ALWAYS_INLINE c10::BFloat16 store_as<c10::BFloat16>(float v) {
  const uint32_t u = float_to_bits(v);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return c10::BFloat16(static_cast<uint16_t>(v != v ? 0x7fc0u : rounded), c10::BFloat16::from_bits());
}
template <>
PYCMLT_ALWAYS_INLINE c10::Half store_as<c10::Half>(float v) {
  // Round to nearest even by adding a power of two that moves the rounding point to bit 13: the sum of
  // |v| scaled into range (overflow to inf, underflow through the subnormal floor 2^-14 handled by `bias`).
  const float base0 = (std::fabs(v) * 5.192296858534828e+33f) * 7.703719777548943e-34f;  // 2^112, 2^-110
  const uint32_t w = float_to_bits(v);
  const uint32_t shl1_w = w + w;
  uint32_t bias = shl1_w & 0xff000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  const uint32_t bits = float_to_bits(bits_to_float((bias >> 1) + 0x07800000u) + base0);
  const uint32_t nonsign = ((bits >> 13) & 0x00007c00u) + (bits & 0x00000fffu);
  const uint32_t out = ((w & 0x80000000u) >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign);
  return c10::Half(static_cast<uint16_t>(out), c10::Half::from_bits());
}

// Math policy of the shared element functions in csrc/common (CPU: the vectorisable versions above).
struct CpuMath {
  static PYCMLT_ALWAYS_INLINE float exp(float x) { return fast_expf(x); }
  static PYCMLT_ALWAYS_INLINE float expm1(float x) { return fast_expm1f(x); }
  static PYCMLT_ALWAYS_INLINE float log(float x) { return fast_logf(x); }
  static PYCMLT_ALWAYS_INLINE float pow_nonneg(float x, float y) { return fast_pow_nonneg(x, y); }
  static PYCMLT_ALWAYS_INLINE float log1p_unit(float e, float inv_1pe) { return fast_log1p_unit(e, inv_1pe); }
};

}  // namespace pycmlt
