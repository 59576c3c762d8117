// Per-element maths of the class-balanced sigmoid BCE (docs/ops/bce.md), shared by the CPU and CUDA
// kernels. `M` is the math policy (exp, log, log1p on [0, 1]): vectorisable polynomials on the CPU
// (csrc/cpu/vec_math.h), the CUDA intrinsics on the GPU. log1p_unit(e, 1 / (1 + e)) = log(1 + e).
#pragma once
#include "common/common.h"

namespace pycmlt {

// Which focal factor bce_elem computes: none (gamma = 0), q^gamma as exp(gamma log q), or q * q for
// gamma = 2 (the usual focal setting: exact, and it saves an exp and a log per element).
enum BceFocal : int { kBceNoFocal = 0, kBceFocalPow = 1, kBceFocalSquare = 2 };

// The focal path a gamma takes: the one rule every launcher (CPU, CUDA) dispatches on.
PYCMLT_HD BceFocal bce_focal_mode(float gamma) {
  return gamma == 2.f ? kBceFocalSquare : (gamma > 0.f ? kBceFocalPow : kBceNoFocal);
}

struct BceElem {
  float loss;  // w * (1 - p_t)^gamma * BCE(z, t)
  float grad;  // d loss / d z
};

// BCE(z, t) = (1 - t) z - lw log(sigmoid(z)), lw = 1 + (pos_weight - 1) t, which is PyTorch's
// binary_cross_entropy_with_logits formula (stable for every z). d BCE / dz = (1 - t) - lw (1 - p).
// Focal (gamma > 0): q = 1 - p_t = t (1 - p) + (1 - t) p, loss = w q^g BCE,
// d loss / dz = w q^g (g (dq/dz) / q BCE + dBCE/dz), dq/dz = (1 - 2t) p (1 - p); |dq/dz / q| <= 1.
template <class M, int FOCAL>
PYCMLT_HD BceElem bce_elem(float z, float t, float w, float pos_weight, float gamma) {
  const float az = z < 0.f ? -z : z;
  const float e = M::exp(-az);                 // exp(-|z|) in [0, 1]
  const float inv = 1.f / (1.f + e);
  const float l1p = M::log1p_unit(e, inv);     // log(1 + exp(-|z|))
  const float lo = e * inv;                    // sigmoid(-|z|)
  const bool nonneg = z >= 0.f;
  const float p = nonneg ? inv : lo;           // sigmoid(z)
  const float q1 = nonneg ? lo : inv;          // 1 - sigmoid(z), without cancellation
  const float log_sig = (z < 0.f ? z : 0.f) - l1p;
  const float lw = 1.f + (pos_weight - 1.f) * t;
  const float bce = (1.f - t) * z - lw * log_sig;
  const float dbce = (1.f - t) - lw * q1;
  BceElem r;
  if (FOCAL != kBceNoFocal) {
    const float q = t * q1 + (1.f - t) * p;
    const bool pos = q > 0.f;
    const float qs = pos ? q : 1.f;
    float qg;
    if (FOCAL == kBceFocalSquare) {
      qg = q * q;  // q >= 0; 0 where q = 0, as below
    } else {
      qg = pos ? M::exp(gamma * M::log(qs)) : 0.f;
    }
    const float ratio = pos ? (1.f - 2.f * t) * p * q1 / qs : 0.f;
    r.loss = w * qg * bce;
    r.grad = w * qg * (gamma * ratio * bce + dbce);
  } else {
    r.loss = w * bce;
    r.grad = w * dbce;
  }
  return r;
}

}  // namespace pycmlt
