// Per-row scalar maths of the class-balanced cross-entropy (docs/ops/cross_entropy.md), shared by the CPU and
// CUDA kernels so that both compute exactly the same loss and gradient coefficients.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/common.h"

namespace pycmlt {

// Everything a kernel needs to know about the loss options, as plain data.
struct CeOptions {
  const float* class_weight;  // [C] or nullptr (all ones)
  const float* margins;       // [C] or nullptr (no LDAM margin)
  const float* logit_bias;    // [C] or nullptr (no logit adjustment)
  float scale;                // z <- scale * z
  float focal_gamma;          // 0: plain cross-entropy
  float label_smoothing;      // eps; 0 <= eps <= 1
  int64_t ignore_index;
  int64_t num_classes;
};

// Coefficients of one row: loss = `loss`; d loss / d z_j = a * p_j - b_target * [j == y] - b_class * w_j.
struct CeRowCoefs {
  float loss;
  float a;
  float b_target;
  float b_class;
};

// The libm functions of ce_row_coefs (CUDA and the CPU rows with many classes; M::pow_nonneg is x^y, x >= 0).
struct CeLibmMath {
  static PYCMLT_HD float exp(float x) { return expf(x); }
  static PYCMLT_HD float expm1(float x) { return expm1f(x); }
  static PYCMLT_HD float pow_nonneg(float x, float y) { return powf(x, y); }
};

// nll = lse - z_y; sum_wz = sum_j w_j z_j (only needed with label smoothing); w_total = sum_j w_j.
// M: exp, expm1 and pow_nonneg (CeLibmMath, or the vectorisable CpuMath of csrc/cpu/vec_math.h).
template <class M = CeLibmMath>
PYCMLT_HD CeRowCoefs ce_row_coefs(float nll, float lse, float sum_wz, float w_y, float w_total,
                                  const CeOptions& o) {
  CeRowCoefs r;
  const float eps = o.label_smoothing;
  if (o.focal_gamma > 0.f) {
    // l = w_y (1 - p)^g (-log p); dl/dz_j = w_y F (p_j - [j == y]),
    // F = (1 - p)^g - g p (1 - p)^(g - 1) log p, with 1 - p computed as -expm1(-nll).
    const float g = o.focal_gamma;
    const float p = M::exp(-nll);
    const float q0 = -M::expm1(-nll);
    const float q = q0 > 0.f ? q0 : 0.f;  // fmaxf(q0, 0) as a select (NaN -> 0), which vectorises
    const float qg = M::pow_nonneg(q, g);
    const float f = q > 0.f ? qg + g * p * M::pow_nonneg(q, g - 1.f) * nll : 0.f;
    r.loss = w_y * qg * nll;
    r.a = w_y * f;
    r.b_target = w_y * f;
    r.b_class = 0.f;
  } else {
    // PyTorch semantics: (1 - eps) w_y (-log p_y) + eps / C * sum_j w_j (-log p_j).
    const float s = eps / static_cast<float>(o.num_classes);
    r.loss = (1.f - eps) * w_y * nll + (eps > 0.f ? s * (w_total * lse - sum_wz) : 0.f);
    // The w_total term only with smoothing: a NaN weight of an unused class must not reach the gradient
    // when eps = 0 (0 * NaN), as in PyTorch, which reads w_y only.
    r.a = (1.f - eps) * w_y + (eps > 0.f ? s * w_total : 0.f);
    r.b_target = (1.f - eps) * w_y;
    r.b_class = s;
  }
  return r;
}

}  // namespace pycmlt
