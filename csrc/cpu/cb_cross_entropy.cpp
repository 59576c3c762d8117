// CPU kernel of pycmlt::cb_cross_entropy: one pass per row computes the loss and writes the
// gradient (no second read of the logits in backward), rows spread over threads with at::parallel_for;
// rows with few classes go through blocks of rows instead (ce_block_small).
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
#include "cpu/empty_output.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

// The passes of ce_row over the columns [lo, hi) of an fp32 row, for z_j = (x_j + bias_j) s (bias may be
// nullptr). fp16/bf16 rows reach them widened into fp32 (ce_row).
PYCMLT_ALWAYS_INLINE float z_of(const float* x, const float* bias, float s, int64_t j) {
  return (x[j] + (bias ? bias[j] : 0.f)) * s;
}
template <bool BIAS>
PYCMLT_ALWAYS_INLINE float max_z(const float* x, const float* bias, float s, int64_t lo, int64_t hi, float mx) {
#pragma omp simd reduction(max : mx)
  for (int64_t j = lo; j < hi; ++j) {
    const float z = z_of(x, BIAS ? bias : nullptr, s, j);
    mx = z > mx ? z : mx;
  }
  return mx;
}
template <bool BIAS>
PYCMLT_ALWAYS_INLINE float weighted_sum_z(const float* x, const float* bias, const float* w, float s, int64_t lo,
                                          int64_t hi) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = lo; j < hi; ++j) acc += (w ? w[j] : 1.f) * z_of(x, BIAS ? bias : nullptr, s, j);
  return acc;
}
template <bool BIAS>
PYCMLT_ALWAYS_INLINE float exp_z(const float* x, const float* bias, float s, float shift, int64_t lo, int64_t hi,
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
// then their exp written straight into the gradient row (into the scratch `buf` of C floats when there
// is no gradient) with its sum, then the gradient scaled in place. g may alias x (the in-place op):
// pass 2 reads x[j] just before it writes g[j], and pass 3 reads g only. The LDAM margin of the target
// column is applied by running the passes on [0, y) and (y, C) and the target column on its own.
template <bool BIAS>
PYCMLT_ALWAYS_INLINE float ce_row_impl(const float* x, int64_t y, const CeOptions& o, float w_y, float w_total,
                                       float grad_scale, float* buf, float* g) {
  const int64_t C = o.num_classes;
  const float s = o.scale;
  const float* bias = o.logit_bias;
  const float* w = o.class_weight;
  const bool split = o.margins != nullptr;
  const float z_y = z_of(x, bias, s, y) - (split ? o.margins[y] * s : 0.f);
  float mx = -std::numeric_limits<float>::infinity();
  if (split) {
    mx = max_z<BIAS>(x, bias, s, y + 1, C, max_z<BIAS>(x, bias, s, 0, y, mx));
    mx = z_y > mx ? z_y : mx;
  } else {
    mx = max_z<BIAS>(x, bias, s, 0, C, mx);
  }
  float sum_wz = 0.f;
  if (o.label_smoothing > 0.f) {
    if (split) {
      sum_wz = weighted_sum_z<BIAS>(x, bias, w, s, 0, y) + weighted_sum_z<BIAS>(x, bias, w, s, y + 1, C) +
               (w ? w[y] : 1.f) * z_y;
    } else {
      sum_wz = weighted_sum_z<BIAS>(x, bias, w, s, 0, C);
    }
  }
  // As in PyTorch (x - max): a row whose max is +inf or NaN gives a NaN loss and gradient
  // (inf - inf); only an all -inf row is shifted by 0 instead.
  const float shift = mx == -std::numeric_limits<float>::infinity() ? 0.f : mx;
  float* e = g ? g : buf;
  float sum;
  if (split) {
    const float e_y = fast_expf(z_y - shift);
    sum = exp_z<BIAS>(x, bias, s, shift, 0, y, e) + exp_z<BIAS>(x, bias, s, shift, y + 1, C, e) + e_y;
    e[y] = e_y;
  } else {
    sum = exp_z<BIAS>(x, bias, s, shift, 0, C, e);
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
      for (int64_t j = 0; j < C; ++j) g[j] = a * e[j] - bc * w[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) g[j] = a * e[j] - bc;
    }
    g[y] = a * e_y - bc * (w ? w[y] : 1.f) - grad_scale * s * k.b_target;
  }
  return k.loss;
}

PYCMLT_ALWAYS_INLINE float ce_row_float(const float* x, int64_t y, const CeOptions& o, float w_y, float w_total,
                                        float grad_scale, float* buf, float* g) {
  return o.logit_bias ? ce_row_impl<true>(x, y, o, w_y, w_total, grad_scale, buf, g)
                      : ce_row_impl<false>(x, y, o, w_y, w_total, grad_scale, buf, g);
}

// fp16/bf16 rows are widened into the fp32 scratch row `buf` (C floats), which the fp32 passes then
// overwrite in place with the gradient (ce_row_impl allows g == x), narrowed into g at the end: two
// plain conversion loops around the fp32 code, which measured 1.5-2x faster than converting inside
// every pass (the passes' register pressure grew with the conversions).
template <typename T>
PYCMLT_ALWAYS_INLINE float ce_row(const T* x, int64_t y, const CeOptions& o, float w_y, float w_total,
                                  float grad_scale, float* buf, T* g) {
  if constexpr (std::is_same_v<T, float>) {
    return ce_row_float(x, y, o, w_y, w_total, grad_scale, buf, g);
  } else {
    const int64_t C = o.num_classes;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) buf[j] = load_float(x[j]);
    const float loss = ce_row_float(buf, y, o, w_y, w_total, grad_scale, buf, buf);
    if (g) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) g[j] = store_as<T>(buf[j]);
    }
    return loss;
  }
}

// Rows with few classes go through ce_block_small, kBlockRows at a time (see use_blocks). With few
// columns the per-row loops of ce_row are mostly set-up, remainders and horizontal reductions (and, for
// focal, five libm calls per row); the block turns the work around: every loop runs over the block's
// rows, one row per SIMD lane, on a transposed copy of the block.
constexpr int64_t kSmallC = 64;
constexpr int64_t kBlockRows = 64;

// Whether ce_row_range uses blocks. Measured (one thread, AVX-512, N = 2048 and 8192, forward+backward):
// blocks are 2-10x faster than ce_row for C < 32 and about 1.15x at C = 32; up to C = 64 they stay
// faster for fp16/bf16 rows (1.5-1.8x: ce_row converts each row into a scratch row) and for rows with
// a loop remainder (C not a multiple of 16) or per-row extra work (focal: libm; LDAM margins: split
// passes). Plain fp32 rows of 48 or 64 classes are 0-17% faster through ce_row. Above 64 classes every
// row goes through ce_row (the block's scratch, kSmallC x kBlockRows floats, is sized for 64).
template <typename T>
inline bool use_blocks(const CeOptions& o) {
  const int64_t C = o.num_classes;
  if (C > kSmallC) return false;
  return C < 48 || !std::is_same_v<T, float> || C % 16 != 0 || o.focal_gamma > 0.f || o.margins != nullptr;
}

// Loss (and gradient when g != nullptr) of rows [0, rows) of a block, rows <= kBlockRows, C <= kSmallC.
// e[j * B + i] holds column j of row i: (0) the block's logits transposed into e; (1) per column the
// adjusted logits z, with each row's max, z_y and sum_j w_j z_j; (2) exp(z - shift) in place with the
// row sums; (3) lse, nll and the coefficients of ce_row_coefs (vectorisable CpuMath) for all rows at
// once; (4) the gradient into e, then transposed out into g. g may alias x (the in-place op): phase 0
// reads the block's logits before phase 4 writes. Same maths and NaN/inf semantics as ce_row (the max
// ignores NaN logits, whose exp then makes the row NaN; an all -inf row shifts by 0; ignored rows give
// 0 and a zero gradient row).
template <typename T>
PYCMLT_ALWAYS_INLINE void ce_block_small(const T* x, int64_t row_stride, const int64_t* tgt, int64_t rows,
                                         const CeOptions& o, float w_total, float grad_scale, float* loss,
                                         T* g, int64_t grad_stride) {
  constexpr int64_t B = kBlockRows;
  const int64_t C = o.num_classes;
  const float s = o.scale;
  const float ninf = -std::numeric_limits<float>::infinity();
  // Up to 16 columns the transposes go column by column (a strided load or store per row, vectorised
  // over the rows); above, row by row (measured: each is faster on its side).
  const bool by_column = C <= 16;
  alignas(64) float e[kSmallC * B];
  alignas(64) float mx[B], zy[B], swz[B], mrg[B], wy[B], sum[B], ka[B], kt[B], kc[B];
  alignas(64) int32_t yi[B];  // the target column, -1 for an ignored row (matches no column)
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t y = tgt[i];
    const bool on = y != o.ignore_index;
    yi[i] = on ? static_cast<int32_t>(y) : -1;
    mrg[i] = on && o.margins ? o.margins[y] * s : 0.f;
    wy[i] = on ? (o.class_weight ? o.class_weight[y] : 1.f) : 0.f;
    mx[i] = ninf;
    zy[i] = 0.f;
    swz[i] = 0.f;
    sum[i] = 0.f;
  }
  if (by_column) {
    for (int64_t j = 0; j < C; ++j) {
      const T* xj = x + j;
      float* ej = e + j * B;
#pragma omp simd
      for (int64_t i = 0; i < rows; ++i) ej[i] = load_float(xj[i * row_stride]);
    }
  } else {
    for (int64_t i = 0; i < rows; ++i) {
      const T* xi = x + i * row_stride;
      for (int64_t j = 0; j < C; ++j) e[j * B + i] = load_float(xi[j]);
    }
  }
  const bool smooth = o.label_smoothing > 0.f;
  for (int64_t j = 0; j < C; ++j) {
    const float bj = o.logit_bias ? o.logit_bias[j] : 0.f;
    const float wj = o.class_weight ? o.class_weight[j] : 1.f;
    const int32_t jc = static_cast<int32_t>(j);
    float* ej = e + j * B;
#pragma omp simd
    for (int64_t i = 0; i < rows; ++i) {
      float z = (ej[i] + bj) * s;
      z = yi[i] == jc ? z - mrg[i] : z;
      ej[i] = z;
      mx[i] = z > mx[i] ? z : mx[i];
      zy[i] = yi[i] == jc ? z : zy[i];
      swz[i] = smooth ? swz[i] + wj * z : swz[i];
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < rows; ++i) mx[i] = mx[i] == ninf ? 0.f : mx[i];  // the shift, as in ce_row
  for (int64_t j = 0; j < C; ++j) {
    float* ej = e + j * B;
#pragma omp simd
    for (int64_t i = 0; i < rows; ++i) {
      const float v = fast_expf(ej[i] - mx[i]);
      ej[i] = v;
      sum[i] += v;
    }
  }
  // A local copy of the options (the stores to loss[] could alias *o) and one loop per branch of
  // ce_row_coefs, so that the loop has no control flow left and vectorises.
  const CeOptions oc = o;
  const float gss = grad_scale * s;
  const auto coefs = [&](int64_t i) __attribute__((always_inline)) {
    const float lse = mx[i] + fast_logf(sum[i]);
    const CeRowCoefs k = ce_row_coefs<CpuMath>(lse - zy[i], lse, swz[i], wy[i], w_total, oc);
    loss[i] = yi[i] >= 0 ? k.loss : 0.f;
    ka[i] = gss * k.a / sum[i];
    kt[i] = gss * k.b_target;
    kc[i] = gss * k.b_class;
  };
  if (oc.focal_gamma > 0.f) {
#pragma omp simd
    for (int64_t i = 0; i < rows; ++i) coefs(i);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < rows; ++i) coefs(i);
  }
  if (!g) return;
  for (int64_t j = 0; j < C; ++j) {
    // b_class = 0 without smoothing: skip it, 0 * (a NaN weight of an unused class) would be NaN.
    const float wj = o.class_weight ? o.class_weight[j] : 1.f;
    const int32_t jc = static_cast<int32_t>(j);
    float* ej = e + j * B;
#pragma omp simd
    for (int64_t i = 0; i < rows; ++i) {
      float v = ka[i] * ej[i] - (kc[i] != 0.f ? kc[i] * wj : 0.f);
      v = yi[i] == jc ? v - kt[i] : v;
      ej[i] = yi[i] >= 0 ? v : 0.f;
    }
  }
  if (by_column) {
    for (int64_t j = 0; j < C; ++j) {
      T* gj = g + j;
      const float* ej = e + j * B;
#pragma omp simd
      for (int64_t i = 0; i < rows; ++i) gj[i * grad_stride] = store_as<T>(ej[i]);
    }
  } else {
    for (int64_t i = 0; i < rows; ++i) {
      T* gi = g + i * grad_stride;
      for (int64_t j = 0; j < C; ++j) gi[j] = store_as<T>(e[j * B + i]);
    }
  }
}

// Rows [begin, end): blocks of ce_block_small where use_blocks(o), else ce_row per row. buf: C floats of
// scratch for the fp16/bf16 rows of ce_row.
template <typename T>
PYCMLT_ALWAYS_INLINE void ce_row_range(const T* x, int64_t row_stride, const int64_t* tgt, int64_t begin,
                                       int64_t end, const CeOptions& o, float w_total, float grad_scale,
                                       float* loss, float* buf, T* grad, int64_t grad_stride) {
  const int64_t C = o.num_classes;
  if (use_blocks<T>(o)) {
    for (int64_t i = begin; i < end; i += kBlockRows) {
      ce_block_small<T>(x + i * row_stride, row_stride, tgt + i, std::min(kBlockRows, end - i), o, w_total,
                        grad_scale, loss + i, grad ? grad + i * grad_stride : nullptr, grad_stride);
    }
    return;
  }
  for (int64_t i = begin; i < end; ++i) {
    const int64_t y = tgt[i];
    T* gi = grad ? grad + i * grad_stride : nullptr;
    if (y == o.ignore_index) {
      loss[i] = 0.f;
      if (gi) std::fill(gi, gi + C, T(0));
      continue;
    }
    const float w_y = o.class_weight ? o.class_weight[y] : 1.f;
    loss[i] = ce_row<T>(x + i * row_stride, y, o, w_y, w_total, grad_scale, buf, gi);
  }
}

// One non-template, multi-versioned entry per dtype, called once per range of rows (the row and block
// code inlined inside), so that the loops are compiled for AVX-512/AVX2.
#define PYCMLT_CE_RANGE_ENTRY(NAME, T)                                                               \
  PYCMLT_MULTIVERSION void NAME(const T* x, int64_t row_stride, const int64_t* tgt, int64_t begin,    \
                                int64_t end, const CeOptions& o, float w_total, float grad_scale,     \
                                float* loss, float* buf, T* grad, int64_t grad_stride) {              \
    ce_row_range<T>(x, row_stride, tgt, begin, end, o, w_total, grad_scale, loss, buf, grad, grad_stride); \
  }
PYCMLT_CE_RANGE_ENTRY(ce_range_float, float)
PYCMLT_CE_RANGE_ENTRY(ce_range_half, c10::Half)
PYCMLT_CE_RANGE_ENTRY(ce_range_bfloat16, c10::BFloat16)
#undef PYCMLT_CE_RANGE_ENTRY

inline void ce_range_dispatch(const float* x, int64_t rs, const int64_t* t, int64_t b, int64_t e,
                              const CeOptions& o, float wt, float gs, float* l, float* buf, float* g, int64_t gst) {
  ce_range_float(x, rs, t, b, e, o, wt, gs, l, buf, g, gst);
}
inline void ce_range_dispatch(const c10::Half* x, int64_t rs, const int64_t* t, int64_t b, int64_t e,
                              const CeOptions& o, float wt, float gs, float* l, float* buf, c10::Half* g,
                              int64_t gst) {
  ce_range_half(x, rs, t, b, e, o, wt, gs, l, buf, g, gst);
}
inline void ce_range_dispatch(const c10::BFloat16* x, int64_t rs, const int64_t* t, int64_t b, int64_t e,
                              const CeOptions& o, float wt, float gs, float* l, float* buf, c10::BFloat16* g,
                              int64_t gst) {
  ce_range_bfloat16(x, rs, t, b, e, o, wt, gs, l, buf, g, gst);
}

// Per-row losses into loss_ptr and, when grad != nullptr, d loss / d logits * grad_scale into the
// rows of grad (row stride grad_stride). grad may be the logits themselves: each row (each block of
// rows for small C) is read whole before its gradient is written.
template <typename scalar_t>
void ce_rows(const scalar_t* x, int64_t row_stride, const int64_t* tgt, int64_t N, const CeOptions& o,
             float w_total, float grad_scale, float* loss_ptr, scalar_t* grad, int64_t grad_stride) {
  const int64_t C = o.num_classes;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1));
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    // ce_row's scratch row; fp32 rows use the gradient row, small-C blocks their own stack arrays.
    std::vector<float> buf((std::is_same_v<scalar_t, float> && grad) || use_blocks<scalar_t>(o) ? 0 : C);
    ce_range_dispatch(x, row_stride, tgt, begin, end, o, w_total, grad_scale, loss_ptr, buf.data(), grad,
                      grad_stride);
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
  at::Tensor grad = compute_grad ? empty_output({N, C}, logits.options()) : at::empty({0}, logits.options());
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
