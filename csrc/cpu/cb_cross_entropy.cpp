// CPU kernel of pycmlt::cb_cross_entropy: one pass per row computes the loss and writes the
// gradient (no second read of the logits in backward), rows spread over threads with at::parallel_for.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <atomic>
#include <type_traits>
#include <vector>

#include "common/ce_glue.h"
#include "common/ce_row_math.h"
#include "common/dispatch.h"
#include "cpu/ce_loss_aux.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

// The passes of ce_row over the columns [lo, hi), for z_j = (x_j + bias_j) s (bias may be nullptr).
template <typename T>
PYCMLT_ALWAYS_INLINE float z_of(const T* x, const float* bias, float s, int64_t j) {
  return (static_cast<float>(x[j]) + (bias ? bias[j] : 0.f)) * s;
}
template <typename T, bool BIAS>
PYCMLT_ALWAYS_INLINE float max_z(const T* x, const float* bias, float s, int64_t lo, int64_t hi, float mx) {
#pragma omp simd reduction(max : mx)
  for (int64_t j = lo; j < hi; ++j) {
    const float z = z_of(x, BIAS ? bias : nullptr, s, j);
    mx = z > mx ? z : mx;
  }
  return mx;
}
template <typename T, bool BIAS>
PYCMLT_ALWAYS_INLINE float weighted_sum_z(const T* x, const float* bias, const float* w, float s, int64_t lo,
                                          int64_t hi) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = lo; j < hi; ++j) acc += (w ? w[j] : 1.f) * z_of(x, BIAS ? bias : nullptr, s, j);
  return acc;
}
template <typename T, bool BIAS>
PYCMLT_ALWAYS_INLINE float exp_z(const T* x, const float* bias, float s, float shift, int64_t lo, int64_t hi,
                                 float* e) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = lo; j < hi; ++j) {
    const float v = fast_expf(z_of(x, BIAS ? bias : nullptr, s, j) - shift);
    e[j] = v;
    acc += v;
  }
  return acc;
}

// Loss of one row; writes d loss / d logits into g when g != nullptr. Three passes over the row, the
// logits read from memory once (the later passes find them in cache): the max of the adjusted logits,
// then their exp written straight into the gradient row (fp32; fp16/bf16 rows use the fp32 scratch
// `buf` of C floats) with its sum, then the gradient scaled in place. g may alias x (the in-place op):
// pass 2 reads x[j] just before it writes g[j], and pass 3 reads g only. The LDAM margin of the target
// column is applied by running the passes on [0, y) and (y, C) and the target column on its own.
template <typename T, bool BIAS>
PYCMLT_ALWAYS_INLINE float ce_row_impl(const T* x, int64_t y, const CeOptions& o, float w_y, float w_total,
                                       float grad_scale, float* buf, T* g) {
  const int64_t C = o.num_classes;
  const float s = o.scale;
  const float* bias = o.logit_bias;
  const float* w = o.class_weight;
  const bool split = o.margins != nullptr;
  const float z_y = z_of(x, bias, s, y) - (split ? o.margins[y] * s : 0.f);
  float mx = -std::numeric_limits<float>::infinity();
  if (split) {
    mx = max_z<T, BIAS>(x, bias, s, y + 1, C, max_z<T, BIAS>(x, bias, s, 0, y, mx));
    mx = z_y > mx ? z_y : mx;
  } else {
    mx = max_z<T, BIAS>(x, bias, s, 0, C, mx);
  }
  float sum_wz = 0.f;
  if (o.label_smoothing > 0.f) {
    if (split) {
      sum_wz = weighted_sum_z<T, BIAS>(x, bias, w, s, 0, y) + weighted_sum_z<T, BIAS>(x, bias, w, s, y + 1, C) +
               (w ? w[y] : 1.f) * z_y;
    } else {
      sum_wz = weighted_sum_z<T, BIAS>(x, bias, w, s, 0, C);
    }
  }
  // As in PyTorch (x - max): a row whose max is +inf or NaN gives a NaN loss and gradient
  // (inf - inf); only an all -inf row is shifted by 0 instead.
  const float shift = mx == -std::numeric_limits<float>::infinity() ? 0.f : mx;
  float* e = buf;
  if constexpr (std::is_same_v<T, float>) {
    if (g) e = g;
  }
  float sum;
  if (split) {
    const float e_y = fast_expf(z_y - shift);
    sum = exp_z<T, BIAS>(x, bias, s, shift, 0, y, e) + exp_z<T, BIAS>(x, bias, s, shift, y + 1, C, e) + e_y;
    e[y] = e_y;
  } else {
    sum = exp_z<T, BIAS>(x, bias, s, shift, 0, C, e);
  }
  const float lse = shift + std::log(sum);
  const float nll = lse - z_y;
  const CeRowCoefs k = ce_row_coefs(nll, lse, sum_wz, w_y, w_total, o);
  if (g) {
    const float a = grad_scale * s * k.a / sum;
    const float bc = grad_scale * s * k.b_class;
    const float e_y = e[y];
    if (w && bc != 0.f) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) g[j] = static_cast<T>(a * e[j] - bc * w[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) g[j] = static_cast<T>(a * e[j] - bc);
    }
    g[y] = static_cast<T>(a * e_y - bc * (w ? w[y] : 1.f) - grad_scale * s * k.b_target);
  }
  return k.loss;
}

template <typename T>
PYCMLT_ALWAYS_INLINE float ce_row(const T* x, int64_t y, const CeOptions& o, float w_y, float w_total,
                                  float grad_scale, float* buf, T* g) {
  return o.logit_bias ? ce_row_impl<T, true>(x, y, o, w_y, w_total, grad_scale, buf, g)
                      : ce_row_impl<T, false>(x, y, o, w_y, w_total, grad_scale, buf, g);
}

// One non-template, multi-versioned entry per dtype so the row loop is compiled for AVX-512/AVX2.
#define PYCMLT_CE_ROW_ENTRY(NAME, T)                                                              \
  PYCMLT_MULTIVERSION float NAME(const T* x, int64_t y, const CeOptions& o, float w_y,          \
                                 float w_total, float grad_scale, float* buf, T* g) {            \
    return ce_row<T>(x, y, o, w_y, w_total, grad_scale, buf, g);                                 \
  }
PYCMLT_CE_ROW_ENTRY(ce_row_float, float)
PYCMLT_CE_ROW_ENTRY(ce_row_half, c10::Half)
PYCMLT_CE_ROW_ENTRY(ce_row_bfloat16, c10::BFloat16)
#undef PYCMLT_CE_ROW_ENTRY

inline float ce_row_dispatch(const float* x, int64_t y, const CeOptions& o, float wy, float wt,
                             float gs, float* buf, float* g) {
  return ce_row_float(x, y, o, wy, wt, gs, buf, g);
}
inline float ce_row_dispatch(const c10::Half* x, int64_t y, const CeOptions& o, float wy, float wt,
                             float gs, float* buf, c10::Half* g) {
  return ce_row_half(x, y, o, wy, wt, gs, buf, g);
}
inline float ce_row_dispatch(const c10::BFloat16* x, int64_t y, const CeOptions& o, float wy,
                             float wt, float gs, float* buf, c10::BFloat16* g) {
  return ce_row_bfloat16(x, y, o, wy, wt, gs, buf, g);
}

// Per-row losses into loss_ptr and, when grad != nullptr, d loss / d logits * grad_scale into the
// rows of grad (row stride grad_stride). grad may be the logits themselves: each row is read whole
// into a scratch buffer before its gradient is written.
template <typename scalar_t>
void ce_rows(const scalar_t* x, int64_t row_stride, const int64_t* tgt, int64_t N, const CeOptions& o,
             float w_total, float grad_scale, float* loss_ptr, scalar_t* grad, int64_t grad_stride) {
  const int64_t C = o.num_classes;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1));
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(std::is_same_v<scalar_t, float> && grad ? 0 : C);  // fp32 rows use the gradient row
    for (int64_t i = begin; i < end; ++i) {
      const int64_t y = tgt[i];
      scalar_t* gi = grad ? grad + i * grad_stride : nullptr;
      if (y == o.ignore_index) {
        loss_ptr[i] = 0.f;
        if (gi) std::fill(gi, gi + C, scalar_t(0));
        continue;
      }
      const float w_y = o.class_weight ? o.class_weight[y] : 1.f;
      loss_ptr[i] = ce_row_dispatch(x + i * row_stride, y, o, w_y, w_total, grad_scale, buf.data(), gi);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> cb_cross_entropy_cpu(
    const at::Tensor& logits_in, const at::Tensor& target_in,
    const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& margins,
    const std::optional<at::Tensor>& logit_bias, double scale, double focal_gamma,
    double label_smoothing, int64_t ignore_index, int64_t reduction, bool compute_grad) {
  check_ce_args(logits_in, target_in, reduction);
  const int64_t N = logits_in.size(0), C = logits_in.size(1);
  const at::Tensor logits = logits_in.stride(-1) == 1 ? logits_in : logits_in.contiguous();
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const CeOptions o = make_ce_options(logits, class_weight, margins, logit_bias, scale, focal_gamma,
                                      label_smoothing, ignore_index);
  const int64_t* tgt = target.data_ptr<int64_t>();
  // Validates the targets; the gradient scale, W and the mean's denominator (csrc/cpu/ce_loss_aux.cpp).
  const CeLossAux aux = ce_loss_aux_host(tgt, N, o.class_weight, C, ignore_index, reduction);

  at::Tensor loss_rows = at::empty({N}, logits.options().dtype(at::kFloat));
  at::Tensor grad = compute_grad ? at::empty({N, C}, logits.options()) : at::empty({0}, logits.options());
  float* loss_ptr = loss_rows.data_ptr<float>();
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_cross_entropy_cpu", [&] {
    ce_rows<scalar_t>(logits.data_ptr<scalar_t>(), logits.stride(0), tgt, N, o, aux.w_total, aux.grad_scale,
                      loss_ptr, compute_grad ? grad.data_ptr<scalar_t>() : nullptr, C);
  });

  if (reduction == kNone) return {loss_rows, grad};
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) total += loss_ptr[i];
  const double value = reduction == kMean ? total / aux.denom : total;
  return {at::scalar_tensor(value, logits.options().dtype(at::kFloat)), grad};
}

// In-place variant for the chunked fused linear + loss: replaces logits with
// aux[0] * d loss / d logits and returns the per-row losses. aux = [gradient scale, sum of class
// weights] is computed once by the caller over the whole batch (a global mean denominator).
at::Tensor cb_cross_entropy_grad_inplace_cpu(
    const at::Tensor& logits, const at::Tensor& target_in, const std::optional<at::Tensor>& class_weight,
    const std::optional<at::Tensor>& margins, const std::optional<at::Tensor>& logit_bias, const at::Tensor& aux,
    double scale, double focal_gamma, double label_smoothing, int64_t ignore_index) {
  check_ce_inplace_args(logits, target_in, aux);
  const int64_t N = logits.size(0);
  const at::Tensor target = target_in.to(at::kLong).contiguous();
  const CeOptions o = make_ce_options(logits, class_weight, margins, logit_bias, scale, focal_gamma,
                                      label_smoothing, ignore_index);
  const int64_t* tgt = target.data_ptr<int64_t>();
  ce_loss_aux_host(tgt, N, o.class_weight, o.num_classes, ignore_index, kNone);  // validates the targets
  const at::Tensor aux_c = aux.contiguous();
  const float grad_scale = aux_c.data_ptr<float>()[0];
  const float w_total = aux_c.data_ptr<float>()[1];
  at::Tensor loss_rows = at::empty({N}, logits.options().dtype(at::kFloat));
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_cross_entropy_grad_inplace_cpu", [&] {
    scalar_t* x = logits.data_ptr<scalar_t>();
    ce_rows<scalar_t>(x, logits.stride(0), tgt, N, o, w_total, grad_scale, loss_rows.data_ptr<float>(), x,
                      logits.stride(0));
  });
  return loss_rows;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) {
  m.impl("cb_cross_entropy", &cb_cross_entropy_cpu);
  m.impl("cb_cross_entropy_grad_inplace", &cb_cross_entropy_grad_inplace_cpu);
}

}  // namespace pycmlt
