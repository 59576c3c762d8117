// CPU kernels of the cross-modal contrastive loss (docs/ops/contrastive.md): pycmlt::contrastive_stats (forward)
// and pycmlt::contrastive_grad (backward). The N x M similarity is never held: it is streamed in
// tiles of kRowTile x kColTile (one BLAS call per tile on the L2-normalised fp32 rows), with a running
// (max, sum of exp) per row and per column, and recomputed tile by tile in backward. Extra memory is
// O(N + M) numbers plus the fp32 normalised copies of A and B and the fp32 gradient accumulators,
// O((N + M) D); one tile buffer per thread.
//
// Maths. S_ij = s * <a^_i, b^_j>, s = exp(logit_scale), a^ = a / max(|a|, eps) (or a when
// normalize=false). Positives pos_ij: labels_a[i] == labels_b[j], or j == i + diag_offset without
// labels. The forward op returns per row  lse_i = log sum_j exp(S_ij),  pos_i = sum_j pos_ij S_ij,
// and per column  clse_j = log sum_i exp(S_ij),  cpos_j = sum_i pos_ij S_ij.  Every loss of
// docs/ops/contrastive.md (CLIP, supervised, class-balanced, symmetric, any reduction) is a linear combination of
// these (built in Python): e.g. the row loss l_i = lse_i - pos_i / |P_i|. Given the incoming
// gradients g_lse, g_pos, g_clse, g_cpos of the four outputs, the chain rule through
// lse_i = log sum_j exp(S_ij) gives
//   dL/dS_ij = g_lse_i softmax_j(S_i.)_j + g_clse_j softmax_i(S_.j)_i + pos_ij (g_pos_i + g_cpos_j)
//            = g_lse_i exp(S_ij - lse_i) + g_clse_j exp(S_ij - clse_j) + pos_ij (g_pos_i + g_cpos_j)
// (for the row loss with anchor weight w_i: g_lse_i = w_i, g_pos_i = -w_i / |P_i|, i.e. the familiar
// w_i (softmax_ij - pos_ij / |P_i|)). With G = dL/dS:
//   dL/da^_i = s sum_j G_ij b^_j,   dL/db^_j = s sum_i G_ij a^_i,
//   dL/dlogit_scale = sum_ij G_ij S_ij = sum_i <a^_i, dL/da^_i>,
// and through the normalisation (F.normalize semantics): da_i = (g - a^_i <a^_i, g>) / |a_i| when
// |a_i| >= eps, g / eps otherwise (a zero vector gets a finite gradient, never NaN).
//
// Threading: the tile grid is split into P x P chunks (P = threads) and processed in P rounds; in
// round r task t handles row chunk t and column chunk (t + r) mod P, so within a round no two tasks
// share a row or a column: per-row and per-column statistics and the dA / dB accumulators are
// updated without atomics or per-thread copies.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/dispatch.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

constexpr int64_t kRowTile = 256;
constexpr int64_t kColTile = 512;
constexpr float kNormEps = 1e-12f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ----------------------------------------------------------------------------- preparation

// out[i] = x[i] / max(|x[i]|, eps) in fp32 (or the plain fp32 copy), norms[i] = |x[i]|.
template <typename T>
PYCMLT_ALWAYS_INLINE void prepare_row(const T* x, int64_t d, bool normalize, float* out, float* norm) {
#pragma omp simd
  for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(x[k]);
  if (!normalize) return;
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t k = 0; k < d; ++k) ss += out[k] * out[k];
  const float n = std::sqrt(ss);
  *norm = n;
  const float denom = n > kNormEps ? n : kNormEps;
#pragma omp simd
  for (int64_t k = 0; k < d; ++k) out[k] = out[k] / denom;
}

#define PYCMLT_PREPARE_ENTRY(NAME, T)                                                           \
  PYCMLT_MULTIVERSION void NAME(const T* x, int64_t d, bool normalize, float* out, float* norm) { \
    prepare_row<T>(x, d, normalize, out, norm);                                                 \
  }
PYCMLT_PREPARE_ENTRY(prepare_row_float, float)
PYCMLT_PREPARE_ENTRY(prepare_row_half, c10::Half)
PYCMLT_PREPARE_ENTRY(prepare_row_bfloat16, c10::BFloat16)
#undef PYCMLT_PREPARE_ENTRY
inline void prepare_row_dispatch(const float* x, int64_t d, bool nz, float* o, float* n) { prepare_row_float(x, d, nz, o, n); }
inline void prepare_row_dispatch(const c10::Half* x, int64_t d, bool nz, float* o, float* n) { prepare_row_half(x, d, nz, o, n); }
inline void prepare_row_dispatch(const c10::BFloat16* x, int64_t d, bool nz, float* o, float* n) {
  prepare_row_bfloat16(x, d, nz, o, n);
}

struct Prepared {
  at::Tensor rows;   // [R, D] fp32 contiguous
  at::Tensor norms;  // [R] fp32 (undefined when !normalize)
};

// fp32 (normalised) rows of x; the input itself when it is already fp32, contiguous and not normalised.
Prepared prepare(const at::Tensor& x, bool normalize) {
  Prepared p;
  if (!normalize && x.scalar_type() == at::kFloat && x.is_contiguous()) {
    p.rows = x.detach();  // the tile BLAS calls run on worker threads, which do not inherit autograd guards
    return p;
  }
  const at::Tensor xc = x.stride(-1) == 1 ? x : x.contiguous();
  const int64_t R = xc.size(0), D = xc.size(1), stride = xc.stride(0);
  p.rows = at::empty({R, D}, xc.options().dtype(at::kFloat));
  if (normalize) p.norms = at::empty({R}, xc.options().dtype(at::kFloat));
  float* out = p.rows.data_ptr<float>();
  float* norms = normalize ? p.norms.data_ptr<float>() : nullptr;
  PYCMLT_DISPATCH_FLOAT_TYPES(xc.scalar_type(), "contrastive_prepare", [&] {
    const scalar_t* in = xc.data_ptr<scalar_t>();
    at::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t lo, int64_t hi) {
      float unused = 0.f;
      for (int64_t i = lo; i < hi; ++i)
        prepare_row_dispatch(in + i * stride, D, normalize, out + i * D, norms ? norms + i : &unused);
    });
  });
  return p;
}

// ----------------------------------------------------------------------------- tiling

// Runs fn(row_begin, row_end, col_begin, col_end) over P x P chunks in P rounds (see the header).
template <typename F>
void latin_square(int64_t N, int64_t M, const F& fn) {
  const int64_t P = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), std::max(N, M)));
  auto bound = [P](int64_t total, int64_t k) { return total * k / P; };
  for (int64_t r = 0; r < P; ++r) {
    at::parallel_for(0, P, 1, [&](int64_t lo, int64_t hi) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;  // thread-local: set on every worker
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t c = (t + r) % P;
        const int64_t r0 = bound(N, t), r1 = bound(N, t + 1), c0 = bound(M, c), c1 = bound(M, c + 1);
        if (r0 < r1 && c0 < c1) fn(r0, r1, c0, c1);
      }
    });
  }
}

// Positives of a tile in tile-local coordinates: labels (la[ii] == lb[jj]) or the diagonal
// jj == ii + diag.
struct TilePositives {
  const int64_t* la;  // [rl] or nullptr
  const int64_t* lb;  // [cl] or nullptr
  int64_t diag;
};

// Raw similarity tile x = A^[r0:r0+rl] @ B^[c0:c0+cl]^T into buf (row-major [rl, cl]).
inline void similarity_tile(const at::Tensor& ah, const at::Tensor& bh, int64_t r0, int64_t rl, int64_t c0,
                            int64_t cl, float* buf) {
  at::Tensor out = at::from_blob(buf, {rl, cl}, at::TensorOptions().dtype(at::kFloat));
  at::mm_out(out, ah.narrow(0, r0, rl), bh.narrow(0, c0, cl).t());
}

// exp(s (x - m)) for a raw dot x <= the running raw max m: the difference is taken before scaling, so the
// argument is <= 0 whatever s is (s * x - s * m would let rounding, or an FMA contraction of s * x - shift,
// push the max element's argument far above 0 once s * x ~ 1e10: inf, then NaN, at logit_scale ~ 24).
PYCMLT_ALWAYS_INLINE float stream_exp(float s, float x, float m) { return fast_expf(s * (x - m)); }

// exp(S - lse), a softmax probability: mathematically <= 1; the argument is clamped at 0 so that the
// rounding of S and lse (computed in different orders) cannot overflow it for large S.
PYCMLT_ALWAYS_INLINE float probability(float diff) { return fast_expf(std::min(diff, 0.f)); }

// Adds one tile (raw dots x, [rl, cl]) to the running row statistics (rmax, rsum, rpos: [rl]) and,
// when cmax != nullptr, to the running column statistics (cmax, csum, cpos: [cl]). colbuf: [cl].
// The running maxima rmax / cmax are in raw-dot units (S = s x): lse = s * max + log(sum) at the end.
PYCMLT_MULTIVERSION void stats_tile(const float* x, int64_t rl, int64_t cl, float s, TilePositives pos,
                                    float* rmax, float* rsum, float* rpos, float* cmax, float* csum,
                                    float* cpos, float* colbuf) {
  const bool cols = cmax != nullptr;
  if (cols) {
    for (int64_t j = 0; j < cl; ++j) colbuf[j] = kNegInf;
  }
  for (int64_t ii = 0; ii < rl; ++ii) {
    const float* xi = x + ii * cl;
    float mx = kNegInf;
    if (cols) {
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < cl; ++j) {
        const float v = xi[j];
        mx = v > mx ? v : mx;
        colbuf[j] = v > colbuf[j] ? v : colbuf[j];
      }
    } else {
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < cl; ++j) mx = xi[j] > mx ? xi[j] : mx;
    }
    // Row update in raw-dot units (see stream_exp): the running max is max_j x_ij.
    const float m_old = rmax[ii];
    const float m_new = std::max(m_old, mx);
    const float shift = std::isfinite(m_new) ? m_new : 0.f;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cl; ++j) sum += stream_exp(s, xi[j], shift);
    rsum[ii] = (m_old == kNegInf ? 0.f : rsum[ii] * stream_exp(s, m_old, shift)) + sum;
    rmax[ii] = m_new;
    // Positives.
    if (pos.la) {
      const int64_t y = pos.la[ii];
      const int64_t* lb = pos.lb;
      float p = 0.f;
      if (cols) {
#pragma omp simd reduction(+ : p)
        for (int64_t j = 0; j < cl; ++j) {
          const float v = lb[j] == y ? xi[j] : 0.f;
          p += v;
          cpos[j] += v;
        }
      } else {
#pragma omp simd reduction(+ : p)
        for (int64_t j = 0; j < cl; ++j) p += lb[j] == y ? xi[j] : 0.f;
      }
      rpos[ii] += p;
    } else {
      const int64_t jj = ii + pos.diag;
      if (jj >= 0 && jj < cl) {
        rpos[ii] += xi[jj];
        if (cols) cpos[jj] += xi[jj];
      }
    }
  }
  if (!cols) return;
  // Column update: rescale the running sums to the new maxima, then add this tile's terms.
  for (int64_t j = 0; j < cl; ++j) {
    const float m_old = cmax[j];
    const float m_new = std::max(m_old, colbuf[j]);
    const float shift = std::isfinite(m_new) ? m_new : 0.f;
    csum[j] = m_old == kNegInf ? 0.f : csum[j] * stream_exp(s, m_old, shift);
    cmax[j] = m_new;
    colbuf[j] = shift;
  }
  for (int64_t ii = 0; ii < rl; ++ii) {
    const float* xi = x + ii * cl;
#pragma omp simd
    for (int64_t j = 0; j < cl; ++j) csum[j] += stream_exp(s, xi[j], colbuf[j]);
  }
}

// In place: x (raw dots of a tile, [rl, cl]) -> s * dL/dS (see the header). Row coefficients
// lse, glse, gpos: [rl]; column coefficients clse, gclse, gcpos: [cl] or nullptr (no column term).
PYCMLT_MULTIVERSION void grad_tile(float* x, int64_t rl, int64_t cl, float s, TilePositives pos,
                                   const float* lse, const float* glse, const float* gpos, const float* clse,
                                   const float* gclse, const float* gcpos) {
  for (int64_t ii = 0; ii < rl; ++ii) {
    float* xi = x + ii * cl;
    const float a = s * glse[ii];
    const float l = lse[ii];
    if (clse) {
#pragma omp simd
      for (int64_t j = 0; j < cl; ++j) {
        const float v = s * xi[j];
        xi[j] = a * probability(v - l) + s * gclse[j] * probability(v - clse[j]);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < cl; ++j) xi[j] = a * probability(s * xi[j] - l);
    }
    const float rp = gpos[ii];
    if (pos.la) {
      const int64_t y = pos.la[ii];
      const int64_t* lb = pos.lb;
      if (gcpos) {
#pragma omp simd
        for (int64_t j = 0; j < cl; ++j) xi[j] += lb[j] == y ? s * (rp + gcpos[j]) : 0.f;
      } else if (rp != 0.f) {
#pragma omp simd
        for (int64_t j = 0; j < cl; ++j) xi[j] += lb[j] == y ? s * rp : 0.f;
      }
    } else {
      const int64_t jj = ii + pos.diag;
      if (jj >= 0 && jj < cl) xi[jj] += s * (rp + (gcpos ? gcpos[jj] : 0.f));
    }
  }
}

// Gradient through the normalisation, written in out's dtype; returns sum_i <a^_i, g_i> (the
// logit-scale term). g: [R, D] fp32 gradient w.r.t. the prepared rows.
template <typename T>
double finish_rows(const Prepared& p, const at::Tensor& g, bool normalize, T* out) {
  const int64_t R = g.size(0), D = g.size(1);
  const float* xh = p.rows.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const float* norms = normalize ? p.norms.data_ptr<float>() : nullptr;
  // One partial per chunk: chunks are fixed by the grain, so the result does not depend on timing.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
  const int64_t chunks = (R + grain - 1) / grain;
  std::vector<double> dots(std::max<int64_t>(chunks, 1), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double acc = 0.0;
      for (int64_t i = c * grain; i < std::min(R, (c + 1) * grain); ++i) {
        const float* xi = xh + i * D;
        const float* gi = gp + i * D;
        T* oi = out + i * D;
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int64_t k = 0; k < D; ++k) dot += xi[k] * gi[k];
        acc += dot;
        if (!normalize) {
#pragma omp simd
          for (int64_t k = 0; k < D; ++k) oi[k] = static_cast<T>(gi[k]);
          continue;
        }
        const float n = norms[i];
        const float u = 1.f / (n > kNormEps ? n : kNormEps);
        const float proj = n >= kNormEps ? dot : 0.f;
#pragma omp simd
        for (int64_t k = 0; k < D; ++k) oi[k] = static_cast<T>((gi[k] - xi[k] * proj) * u);
      }
      dots[c] = acc;
    }
  });
  double total = 0.0;
  for (double v : dots) total += v;
  return total;
}

void check_pair(const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& la,
                const std::optional<at::Tensor>& lb, const at::Tensor& logit_scale) {
  TORCH_CHECK_VALUE(a.dim() == 2 && b.dim() == 2, "a and b must be 2-D [N, D] and [M, D], got ", a.sizes(),
                    " and ", b.sizes());
  TORCH_CHECK_VALUE(a.size(1) == b.size(1), "a and b must have the same feature dimension, got ", a.size(1),
                    " and ", b.size(1));
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "a and b must have the same dtype, got ", a.scalar_type(),
                   " and ", b.scalar_type());
  TORCH_CHECK_VALUE(la.has_value() == lb.has_value(), "labels_a and labels_b must be given together");
  if (la.has_value()) {
    TORCH_CHECK_VALUE(la->dim() == 1 && la->size(0) == a.size(0), "labels_a must have shape [", a.size(0), "]");
    TORCH_CHECK_VALUE(lb->dim() == 1 && lb->size(0) == b.size(0), "labels_b must have shape [", b.size(0), "]");
  }
  TORCH_CHECK_VALUE(logit_scale.numel() == 1, "logit_scale must be a scalar tensor");
}

at::Tensor labels_long(const std::optional<at::Tensor>& l) {
  return l.has_value() ? l->to(at::kLong).contiguous() : at::Tensor();
}

// ----------------------------------------------------------------------------- ops

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_stats_cpu(
    const at::Tensor& a, const at::Tensor& b, const at::Tensor& logit_scale,
    const std::optional<at::Tensor>& labels_a, const std::optional<at::Tensor>& labels_b, int64_t diag_offset,
    bool normalize, bool col_stats) {
  check_pair(a, b, labels_a, labels_b, logit_scale);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // tile BLAS calls on (views of) the inputs
  const float s = static_cast<float>(std::exp(logit_scale.to(at::kDouble).item<double>()));
  const Prepared pa = prepare(a, normalize), pb = prepare(b, normalize);
  const at::Tensor la = labels_long(labels_a), lb = labels_long(labels_b);
  const int64_t N = a.size(0), M = b.size(0);
  const auto f32 = a.options().dtype(at::kFloat);

  at::Tensor row_lse = at::full({N}, kNegInf, f32), row_sum = at::zeros({N}, f32), row_pos = at::zeros({N}, f32);
  at::Tensor col_lse = at::full({col_stats ? M : 0}, kNegInf, f32), col_sum = at::zeros({col_stats ? M : 0}, f32),
             col_pos = at::zeros({col_stats ? M : 0}, f32);
  float* rmax = row_lse.data_ptr<float>();
  float* rsum = row_sum.data_ptr<float>();
  float* rpos = row_pos.data_ptr<float>();
  float* cmax = col_stats ? col_lse.data_ptr<float>() : nullptr;
  float* csum = col_stats ? col_sum.data_ptr<float>() : nullptr;
  float* cpos = col_stats ? col_pos.data_ptr<float>() : nullptr;
  const int64_t* lap = la.defined() ? la.data_ptr<int64_t>() : nullptr;
  const int64_t* lbp = lb.defined() ? lb.data_ptr<int64_t>() : nullptr;

  auto run_block = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1, bool cols) {
    std::vector<float> buf(kRowTile * kColTile), colbuf(kColTile);
    for (int64_t rt = r0; rt < r1; rt += kRowTile) {
      const int64_t rl = std::min(kRowTile, r1 - rt);
      for (int64_t ct = c0; ct < c1; ct += kColTile) {
        const int64_t cl = std::min(kColTile, c1 - ct);
        similarity_tile(pa.rows, pb.rows, rt, rl, ct, cl, buf.data());
        TilePositives pos{lap ? lap + rt : nullptr, lbp ? lbp + ct : nullptr, rt + diag_offset - ct};
        stats_tile(buf.data(), rl, cl, s, pos, rmax + rt, rsum + rt, rpos + rt, cols ? cmax + ct : nullptr,
                   cols ? csum + ct : nullptr, cols ? cpos + ct : nullptr, colbuf.data());
      }
    }
  };
  if (N > 0 && M > 0) {
    if (col_stats) {
      latin_square(N, M, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) { run_block(r0, r1, c0, c1, true); });
    } else {
      // Rows only: no column is shared, so row tiles are independent.
      const int64_t tiles = (N + kRowTile - 1) / kRowTile;
      at::parallel_for(0, tiles, 1, [&](int64_t lo, int64_t hi) {
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        for (int64_t t = lo; t < hi; ++t) run_block(t * kRowTile, std::min(N, (t + 1) * kRowTile), 0, M, false);
      });
    }
  }
  // lse = s * (raw max) + log(sum); pos scaled by s (accumulated on the raw dots).
  for (int64_t i = 0; i < N; ++i) {
    rmax[i] = rsum[i] > 0.f ? s * rmax[i] + std::log(rsum[i]) : (std::isnan(rsum[i]) ? rsum[i] : s * rmax[i]);
    rpos[i] *= s;
  }
  for (int64_t j = 0; col_stats && j < M; ++j) {
    cmax[j] = csum[j] > 0.f ? s * cmax[j] + std::log(csum[j]) : (std::isnan(csum[j]) ? csum[j] : s * cmax[j]);
    cpos[j] *= s;
  }
  return {row_lse, row_pos, col_lse, col_pos};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_grad_cpu(
    const at::Tensor& a, const at::Tensor& b, const at::Tensor& logit_scale,
    const std::optional<at::Tensor>& labels_a, const std::optional<at::Tensor>& labels_b, int64_t diag_offset,
    bool normalize, const at::Tensor& row_lse, const at::Tensor& col_lse,
    const std::optional<at::Tensor>& grad_row_lse, const std::optional<at::Tensor>& grad_row_pos,
    const std::optional<at::Tensor>& grad_col_lse, const std::optional<at::Tensor>& grad_col_pos) {
  check_pair(a, b, labels_a, labels_b, logit_scale);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // tile BLAS calls on (views of) the inputs
  const int64_t N = a.size(0), M = b.size(0), D = a.size(1);
  const auto f32 = a.options().dtype(at::kFloat);
  auto vec = [&](const std::optional<at::Tensor>& t, int64_t n, const char* name) -> at::Tensor {
    if (!t.has_value()) return at::Tensor();
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == n, name, " must have shape [", n, "], got ", t->sizes());
    return t->to(at::kFloat).contiguous();
  };
  const at::Tensor lse = vec(row_lse, N, "row_lse");
  const at::Tensor g_lse = vec(grad_row_lse, N, "grad_row_lse"), g_pos = vec(grad_row_pos, N, "grad_row_pos");
  const at::Tensor g_clse = vec(grad_col_lse, M, "grad_col_lse"), g_cpos = vec(grad_col_pos, M, "grad_col_pos");
  const at::Tensor clse = g_clse.defined() ? vec(col_lse, M, "col_lse") : at::Tensor();
  const at::Tensor zeros_n = at::zeros({N}, f32);
  const float* lsep = lse.data_ptr<float>();
  const float* glsep = g_lse.defined() ? g_lse.data_ptr<float>() : zeros_n.data_ptr<float>();
  const float* gposp = g_pos.defined() ? g_pos.data_ptr<float>() : zeros_n.data_ptr<float>();
  const float* clsep = clse.defined() ? clse.data_ptr<float>() : nullptr;
  const float* gclsep = clse.defined() ? g_clse.data_ptr<float>() : nullptr;
  const float* gcposp = g_cpos.defined() ? g_cpos.data_ptr<float>() : nullptr;

  const float s = static_cast<float>(std::exp(logit_scale.to(at::kDouble).item<double>()));
  const Prepared pa = prepare(a, normalize), pb = prepare(b, normalize);
  const at::Tensor la = labels_long(labels_a), lb = labels_long(labels_b);
  const int64_t* lap = la.defined() ? la.data_ptr<int64_t>() : nullptr;
  const int64_t* lbp = lb.defined() ? lb.data_ptr<int64_t>() : nullptr;
  at::Tensor ga = at::zeros({N, D}, f32), gb = at::zeros({M, D}, f32);

  if (N > 0 && M > 0 && D > 0) {
    latin_square(N, M, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
      std::vector<float> buf(kRowTile * kColTile);
      for (int64_t rt = r0; rt < r1; rt += kRowTile) {
        const int64_t rl = std::min(kRowTile, r1 - rt);
        for (int64_t ct = c0; ct < c1; ct += kColTile) {
          const int64_t cl = std::min(kColTile, c1 - ct);
          similarity_tile(pa.rows, pb.rows, rt, rl, ct, cl, buf.data());
          TilePositives pos{lap ? lap + rt : nullptr, lbp ? lbp + ct : nullptr, rt + diag_offset - ct};
          grad_tile(buf.data(), rl, cl, s, pos, lsep + rt, glsep + rt, gposp + rt, clsep ? clsep + ct : nullptr,
                    gclsep ? gclsep + ct : nullptr, gcposp ? gcposp + ct : nullptr);
          const at::Tensor g = at::from_blob(buf.data(), {rl, cl}, at::TensorOptions().dtype(at::kFloat));
          ga.narrow(0, rt, rl).addmm_(g, pb.rows.narrow(0, ct, cl));
          gb.narrow(0, ct, cl).addmm_(g.t(), pa.rows.narrow(0, rt, rl));
        }
      }
    });
  }
  // fp32 inputs: the normalisation backward runs in place on the accumulators (row by row: the
  // dot product of a row is taken before the row is overwritten), saving an [N + M, D] buffer.
  const bool in_place = a.scalar_type() == at::kFloat;
  at::Tensor grad_a = in_place ? ga : at::empty({N, D}, a.options());
  at::Tensor grad_b = in_place ? gb : at::empty({M, D}, b.options());
  double g_scale = 0.0;
  PYCMLT_DISPATCH_FLOAT_TYPES(a.scalar_type(), "contrastive_grad_finish", [&] {
    g_scale = finish_rows<scalar_t>(pa, ga, normalize, grad_a.data_ptr<scalar_t>());
    finish_rows<scalar_t>(pb, gb, normalize, grad_b.data_ptr<scalar_t>());
  });
  return {grad_a, grad_b, at::scalar_tensor(g_scale, f32)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) {
  m.impl("contrastive_stats", &contrastive_stats_cpu);
  m.impl("contrastive_grad", &contrastive_grad_cpu);
}

}  // namespace pycmlt
