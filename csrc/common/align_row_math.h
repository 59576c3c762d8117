// Per-row scalar maths of the alignment loss (docs/ops/alignment.md), shared by the CPU and CUDA kernels.
//
// For one row pair (a, b) with aa = <a, a>, bb = <b, b>, ab = <a, b>, u_a = 1 / max(|a|, eps),
// u_b = 1 / max(|b|, eps) (1 without normalisation) and c = ab u_a u_b, the loss is
//   cosine: 1 - c                          mse: |u_a a - u_b b|^2  (summed over the features)
// and both gradients are linear combinations of the two rows:
//   dl/da = alpha_a a + beta b,   dl/db = alpha_b b + beta a.
// Derivation (normalised; F.normalize semantics): with g = dl/da^ the gradient through
// a^ = a u_a is u_a (g - a^ <a^, g>) when |a| >= eps and u_a g below eps (a zero vector gets a
// finite gradient, never NaN).
//   cosine: g = -b^, <a^, g> = -c        -> alpha_a = c u_a^2 [|a| >= eps], beta = -u_a u_b
//   mse:    g = 2(a^ - b^), <a^, g> = 2(aa u_a^2 - c)
//                                         -> alpha_a = 2 u_a^2 (1 - (aa u_a^2 - c) [|a| >= eps]),
//                                            beta = -2 u_a u_b
// and symmetrically for b. Without normalisation: cosine (1 - <a, b>) alpha = 0, beta = -1;
// mse (|a - b|^2) alpha = 2, beta = -2.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PYCMLT_ALIGN_HD __host__ __device__ __forceinline__
#else
#define PYCMLT_ALIGN_HD inline
#endif

namespace pycmlt {

enum AlignKind : int64_t { kAlignCosine = 0, kAlignMse = 1 };
constexpr float kAlignNormEps = 1e-12f;

struct AlignRowCoefs {
  float ua, ub;     // row scales applied before the loss (1 without normalisation)
  float c;          // <a^, b^>
  float alpha_a, alpha_b, beta;
};

PYCMLT_ALIGN_HD AlignRowCoefs align_row_coefs(float aa, float bb, float ab, int64_t kind, bool normalize) {
  AlignRowCoefs k;
  if (!normalize) {
    k.ua = k.ub = 1.f;
    k.c = ab;
    if (kind == kAlignCosine) {
      k.alpha_a = k.alpha_b = 0.f;
      k.beta = -1.f;
    } else {
      k.alpha_a = k.alpha_b = 2.f;
      k.beta = -2.f;
    }
    return k;
  }
  const float na = sqrtf(aa), nb = sqrtf(bb);
  k.ua = 1.f / (na > kAlignNormEps ? na : kAlignNormEps);
  k.ub = 1.f / (nb > kAlignNormEps ? nb : kAlignNormEps);
  const bool pa = na >= kAlignNormEps, pb = nb >= kAlignNormEps;
  k.c = ab * k.ua * k.ub;
  if (kind == kAlignCosine) {
    k.alpha_a = pa ? k.c * k.ua * k.ua : 0.f;
    k.alpha_b = pb ? k.c * k.ub * k.ub : 0.f;
    k.beta = -k.ua * k.ub;
  } else {
    k.alpha_a = 2.f * k.ua * k.ua * (1.f - (pa ? aa * k.ua * k.ua - k.c : 0.f));
    k.alpha_b = 2.f * k.ub * k.ub * (1.f - (pb ? bb * k.ub * k.ub - k.c : 0.f));
    k.beta = -2.f * k.ua * k.ub;
  }
  return k;
}

}  // namespace pycmlt
