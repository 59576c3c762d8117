// CPU kernel of pycmlt::alignment (docs/ops/alignment.md): 1 - cos(a, b) or |a - b|^2 per row pair, fused with
// the L2 normalisation. One pass per row computes the three dot products (and, for mse after
// normalisation, a second pass over the row while it is in L1 computes |a^ - b^|^2 without
// cancellation); the gradients of both inputs are written in the same call (backward only scales).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/align_row_math.h"
#include "common/ce_row_math.h"
#include "common/dispatch.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

template <typename T>
PYCMLT_ALWAYS_INLINE float align_row(const T* a, const T* b, int64_t D, int64_t kind, bool normalize, float gs,
                                     T* ga, T* gb) {
  float aa = 0.f, bb = 0.f, ab = 0.f, dd = 0.f;
#pragma omp simd reduction(+ : aa, bb, ab, dd)
  for (int64_t k = 0; k < D; ++k) {
    const float x = static_cast<float>(a[k]), y = static_cast<float>(b[k]);
    aa += x * x;
    bb += y * y;
    ab += x * y;
    dd += (x - y) * (x - y);
  }
  const AlignRowCoefs c = align_row_coefs(aa, bb, ab, kind, normalize);
  float loss;
  if (kind == kAlignCosine) {
    loss = 1.f - c.c;
  } else if (!normalize) {
    loss = dd;
  } else {
    float d2 = 0.f;
#pragma omp simd reduction(+ : d2)
    for (int64_t k = 0; k < D; ++k) {
      const float e = c.ua * static_cast<float>(a[k]) - c.ub * static_cast<float>(b[k]);
      d2 += e * e;
    }
    loss = d2;
  }
  const float aa_ = gs * c.alpha_a, ab_ = gs * c.alpha_b, be = gs * c.beta;
  if (ga) {
#pragma omp simd
    for (int64_t k = 0; k < D; ++k)
      ga[k] = static_cast<T>(aa_ * static_cast<float>(a[k]) + be * static_cast<float>(b[k]));
  }
  if (gb) {
#pragma omp simd
    for (int64_t k = 0; k < D; ++k)
      gb[k] = static_cast<T>(ab_ * static_cast<float>(b[k]) + be * static_cast<float>(a[k]));
  }
  return loss;
}

#define PYCMLT_ALIGN_ENTRY(NAME, T)                                                                  \
  PYCMLT_MULTIVERSION float NAME(const T* a, const T* b, int64_t D, int64_t kind, bool normalize,     \
                                 float gs, T* ga, T* gb) {                                           \
    return align_row<T>(a, b, D, kind, normalize, gs, ga, gb);                                       \
  }
PYCMLT_ALIGN_ENTRY(align_row_float, float)
PYCMLT_ALIGN_ENTRY(align_row_half, c10::Half)
PYCMLT_ALIGN_ENTRY(align_row_bfloat16, c10::BFloat16)
#undef PYCMLT_ALIGN_ENTRY

inline float align_row_dispatch(const float* a, const float* b, int64_t D, int64_t k, bool n, float gs, float* ga,
                                float* gb) {
  return align_row_float(a, b, D, k, n, gs, ga, gb);
}
inline float align_row_dispatch(const c10::Half* a, const c10::Half* b, int64_t D, int64_t k, bool n, float gs,
                                c10::Half* ga, c10::Half* gb) {
  return align_row_half(a, b, D, k, n, gs, ga, gb);
}
inline float align_row_dispatch(const c10::BFloat16* a, const c10::BFloat16* b, int64_t D, int64_t k, bool n,
                                float gs, c10::BFloat16* ga, c10::BFloat16* gb) {
  return align_row_bfloat16(a, b, D, k, n, gs, ga, gb);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> alignment_cpu(const at::Tensor& a_in, const at::Tensor& b_in,
                                                             int64_t kind, bool normalize, int64_t reduction,
                                                             bool grad_a, bool grad_b) {
  TORCH_CHECK_VALUE(a_in.dim() == 2 && a_in.sizes() == b_in.sizes(), "a and b must be 2-D of the same shape, got ",
                    a_in.sizes(), " and ", b_in.sizes());
  TORCH_CHECK_TYPE(a_in.scalar_type() == b_in.scalar_type(), "a and b must have the same dtype");
  TORCH_CHECK_VALUE(kind == kAlignCosine || kind == kAlignMse, "kind code must be 0 (cosine) or 1 (mse)");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2");
  const at::Tensor a = a_in.is_contiguous() ? a_in : a_in.contiguous();
  const at::Tensor b = b_in.is_contiguous() ? b_in : b_in.contiguous();
  const int64_t N = a.size(0), D = a.size(1);
  const float gs = reduction == kMean ? (N > 0 ? 1.f / static_cast<float>(N) : 0.f) : 1.f;
  at::Tensor loss_rows = at::empty({N}, a.options().dtype(at::kFloat));
  at::Tensor ga = grad_a ? at::empty({N, D}, a.options()) : at::empty({0}, a.options());
  at::Tensor gb = grad_b ? at::empty({N, D}, a.options()) : at::empty({0}, a.options());
  float* loss = loss_rows.data_ptr<float>();
  PYCMLT_DISPATCH_FLOAT_TYPES(a.scalar_type(), "alignment_cpu", [&] {
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    scalar_t* gap = grad_a ? ga.data_ptr<scalar_t>() : nullptr;
    scalar_t* gbp = grad_b ? gb.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, N, std::max<int64_t>(1, 8192 / std::max<int64_t>(D, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        loss[i] = align_row_dispatch(ap + i * D, bp + i * D, D, kind, normalize, gs, gap ? gap + i * D : nullptr,
                                     gbp ? gbp + i * D : nullptr);
    });
  });
  if (reduction == kNone) return {loss_rows, ga, gb};
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) total += loss[i];
  const double value = reduction == kMean ? total / static_cast<double>(N) : total;
  return {at::scalar_tensor(value, a.options().dtype(at::kFloat)), ga, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) { m.impl("alignment", &alignment_cpu); }

}  // namespace pycmlt
