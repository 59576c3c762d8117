// CPU kernels of pycmlt::cb_bce and pycmlt::cb_bce_grad_inplace (docs/ops/bce.md): one pass over each
// row computes the per-element loss and writes the gradient (no second read of the logits in
// backward), rows spread over threads with at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "common/bce_math.h"
#include "common/dispatch.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

// One row of C elements in fp32: loss into lrow, grad_scale * d loss / d z into grow (grow may
// alias x). All pointers are plain floats so that the loop vectorises.
template <bool FOCAL>
PYCMLT_ALWAYS_INLINE float bce_row(const float* x, const float* t, const float* w, const float* pw, float gamma,
                                   float grad_scale, int64_t C, float* lrow, float* grow) {
#pragma omp simd
  for (int64_t j = 0; j < C; ++j) {
    const BceElem r = bce_elem<CpuMath, FOCAL>(x[j], t[j], w[j], pw[j], gamma);
    lrow[j] = r.loss;
    grow[j] = r.grad * grad_scale;
  }
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < C; ++j) sum += lrow[j];
  return sum;
}

PYCMLT_MULTIVERSION float bce_row_fp32(const float* x, const float* t, const float* w, const float* pw, float gamma,
                                       float gs, int64_t C, float* lrow, float* grow) {
  return gamma > 0.f ? bce_row<true>(x, t, w, pw, gamma, gs, C, lrow, grow)
                     : bce_row<false>(x, t, w, pw, gamma, gs, C, lrow, grow);
}

// fp16/bf16 rows go through fp32 scratch rows (conversion loops, then the vectorised fp32 loop).
template <typename T>
const float* as_float_row(const T* v, int64_t C, float* scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    for (int64_t j = 0; j < C; ++j) scratch[j] = static_cast<float>(v[j]);
    return scratch;
  }
}

// A weight broadcast over [N, C]: fp32 [rows, cols] with rows in {1, N} and cols in {1, C}.
struct Broadcast2d {
  const float* data = nullptr;  // nullptr: all ones
  int64_t rows = 1;
  int64_t cols = 1;
};

Broadcast2d broadcast_arg(const std::optional<at::Tensor>& t, int64_t N, int64_t C, const char* name) {
  Broadcast2d b;
  if (!t.has_value()) return b;
  TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->dim() == 2 && t->is_contiguous() && t->device().is_cpu(),
                    name, " must be a contiguous float32 CPU tensor [rows, cols], got ", t->scalar_type(), " ",
                    t->sizes());
  TORCH_CHECK_VALUE((t->size(0) == 1 || t->size(0) == N) && (t->size(1) == 1 || t->size(1) == C), name,
                    " must have shape [1 or ", N, ", 1 or ", C, "], got ", t->sizes());
  b.data = t->data_ptr<float>();
  b.rows = t->size(0);
  b.cols = t->size(1);
  return b;
}

// Row i of a broadcast weight as C contiguous floats: a pointer into the tensor when it has C
// columns, otherwise `buf` filled with the row's single value (refilled only when it changes).
struct RowView {
  const Broadcast2d& b;
  std::vector<float>& buf;
  float last;
  bool filled = false;
  const float* row(int64_t i) {
    if (b.data && b.cols > 1) return b.data + (b.rows > 1 ? i * b.cols : 0);
    const float v = b.data ? b.data[b.rows > 1 ? i : 0] : 1.f;
    if (!filled || v != last) {
      std::fill(buf.begin(), buf.end(), v);
      last = v;
      filled = true;
    }
    return buf.data();
  }
};

// Every row: per-element losses into loss_elem ([N, C], or a scratch row when nullptr), the row
// sums into row_sums, grad_scale * gradient into grad (row stride grad_stride; skipped when
// nullptr; may be the logits themselves).
template <typename T, typename U>
void bce_rows(const T* x, int64_t x_stride, const U* t, int64_t t_stride, int64_t N, int64_t C, Broadcast2d w,
              Broadcast2d pw, float gamma, float grad_scale, float* loss_elem, float* row_sums, T* grad,
              int64_t grad_stride) {
  constexpr bool kFloatGrad = std::is_same_v<T, float>;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1));
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> wbuf(C), pwbuf(C), lbuf(loss_elem ? 0 : C);
    std::vector<float> xbuf(kFloatGrad ? 0 : C), tbuf(std::is_same_v<U, float> ? 0 : C);
    std::vector<float> gbuf(kFloatGrad && grad ? 0 : C);
    RowView wv{w, wbuf, 0.f}, pwv{pw, pwbuf, 0.f};
    for (int64_t i = begin; i < end; ++i) {
      float* lrow = loss_elem ? loss_elem + i * C : lbuf.data();
      const float* xr = as_float_row(x + i * x_stride, C, xbuf.data());
      const float* tr = as_float_row(t + i * t_stride, C, tbuf.data());
      T* gi = grad ? grad + i * grad_stride : nullptr;
      float* grow;
      if constexpr (kFloatGrad) {
        grow = gi ? gi : gbuf.data();
      } else {
        grow = gbuf.data();
      }
      row_sums[i] = bce_row_fp32(xr, tr, wv.row(i), pwv.row(i), gamma, grad_scale, C, lrow, grow);
      if constexpr (!kFloatGrad) {
        if (gi)
          for (int64_t j = 0; j < C; ++j) gi[j] = static_cast<T>(grow[j]);
      }
    }
  });
}

void check_pair(const at::Tensor& logits, const at::Tensor& targets) {
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be 2-D [N, C], got shape ", logits.sizes());
  TORCH_CHECK_VALUE(targets.sizes() == logits.sizes(), "targets must have the shape of logits ", logits.sizes(),
                    ", got ", targets.sizes());
  TORCH_CHECK_TYPE(targets.scalar_type() == logits.scalar_type() || targets.scalar_type() == at::kFloat,
                   "targets must be float32 or logits' dtype (", logits.scalar_type(), "), got ",
                   targets.scalar_type());
}

// Runs bce_rows with the targets' dtype resolved (logits' own dtype or float32).
template <typename T>
void bce_rows_any_target(const at::Tensor& logits, const at::Tensor& targets, Broadcast2d w, Broadcast2d pw,
                         float gamma, float gs, float* loss_elem, float* row_sums, T* grad, int64_t grad_stride) {
  const int64_t N = logits.size(0), C = logits.size(1);
  const T* x = logits.data_ptr<T>();
  if (targets.scalar_type() == logits.scalar_type()) {
    bce_rows<T, T>(x, logits.stride(0), targets.data_ptr<T>(), targets.stride(0), N, C, w, pw, gamma, gs,
                   loss_elem, row_sums, grad, grad_stride);
  } else {
    bce_rows<T, float>(x, logits.stride(0), targets.data_ptr<float>(), targets.stride(0), N, C, w, pw, gamma, gs,
                       loss_elem, row_sums, grad, grad_stride);
  }
}

std::tuple<at::Tensor, at::Tensor> cb_bce_cpu(const at::Tensor& logits_in, const at::Tensor& targets_in,
                                              const std::optional<at::Tensor>& weight,
                                              const std::optional<at::Tensor>& pos_weight, double focal_gamma,
                                              int64_t reduction, bool compute_grad) {
  check_pair(logits_in, targets_in);
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2, "reduction code must be 0, 1 or 2");
  const at::Tensor logits = logits_in.stride(-1) == 1 ? logits_in : logits_in.contiguous();
  const at::Tensor targets = targets_in.stride(-1) == 1 ? targets_in : targets_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  const Broadcast2d w = broadcast_arg(weight, N, C, "weight");
  const Broadcast2d pw = broadcast_arg(pos_weight, N, C, "pos_weight");
  const double count = static_cast<double>(N) * static_cast<double>(C);
  const float gs = reduction == kMean ? static_cast<float>(1.0 / count) : 1.f;
  at::Tensor loss_elem = reduction == kNone ? at::empty({N, C}, logits.options().dtype(at::kFloat)) : at::Tensor();
  at::Tensor row_sums = at::empty({N}, logits.options().dtype(at::kFloat));
  at::Tensor grad = compute_grad ? at::empty({N, C}, logits.options()) : at::empty({0}, logits.options());
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_bce_cpu", [&] {
    bce_rows_any_target<scalar_t>(logits, targets, w, pw, static_cast<float>(focal_gamma), gs,
                                  reduction == kNone ? loss_elem.data_ptr<float>() : nullptr,
                                  row_sums.data_ptr<float>(), compute_grad ? grad.data_ptr<scalar_t>() : nullptr, C);
  });
  if (reduction == kNone) return {loss_elem, grad};
  double total = 0.0;
  const float* rs = row_sums.data_ptr<float>();
  for (int64_t i = 0; i < N; ++i) total += rs[i];
  const double value = reduction == kMean ? total / count : total;  // 0 / 0 = NaN for an empty mean, as in PyTorch
  return {at::scalar_tensor(value, logits.options().dtype(at::kFloat)), grad};
}

at::Tensor cb_bce_grad_inplace_cpu(const at::Tensor& logits, const at::Tensor& targets_in,
                                   const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& pos_weight,
                                   double focal_gamma, double grad_scale) {
  check_pair(logits, targets_in);
  TORCH_CHECK_VALUE(logits.stride(1) == 1, "logits must be a buffer with unit column stride, got strides ",
                    logits.strides());
  const at::Tensor targets = targets_in.stride(-1) == 1 ? targets_in : targets_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  const Broadcast2d w = broadcast_arg(weight, N, C, "weight");
  const Broadcast2d pw = broadcast_arg(pos_weight, N, C, "pos_weight");
  at::Tensor row_sums = at::empty({N}, logits.options().dtype(at::kFloat));
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_bce_grad_inplace_cpu", [&] {
    bce_rows_any_target<scalar_t>(logits, targets, w, pw, static_cast<float>(focal_gamma),
                                  static_cast<float>(grad_scale), nullptr, row_sums.data_ptr<float>(),
                                  logits.data_ptr<scalar_t>(), logits.stride(0));
  });
  double total = 0.0;
  const float* rs = row_sums.data_ptr<float>();
  for (int64_t i = 0; i < N; ++i) total += rs[i];
  return at::scalar_tensor(total, logits.options().dtype(at::kFloat));
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) {
  m.impl("cb_bce", &cb_bce_cpu);
  m.impl("cb_bce_grad_inplace", &cb_bce_grad_inplace_cpu);
}

}  // namespace pycmlt
