// CPU kernels of pycmlt::cb_bce and pycmlt::cb_bce_grad_inplace (docs/ops/bce.md): one pass over the
// elements computes each loss and writes the gradient (no second read of the logits in backward).
// Contiguous inputs with few classes go through blocks of rows, each treated as one flat vector
// (bce_blocks); other inputs row by row (bce_rows). Work spread over threads with at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/bce_math.h"
#include "common/dispatch.h"
#include "cpu/empty_output.h"
#include "cpu/vec_math.h"

namespace pycmlt {
namespace {

// n elements in fp32: grad_scale * d loss / d z into g (g may alias x), the losses into l when
// STORE_LOSS (reduction none), else their sum returned. Plain float pointers so that the loop vectorises.
template <int FOCAL, bool STORE_LOSS>
PYCMLT_ALWAYS_INLINE float bce_elems(const float* x, const float* t, const float* w, const float* pw, float gamma,
                                     float grad_scale, int64_t n, float* l, float* g) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < n; ++k) {
    const BceElem r = bce_elem<CpuMath, FOCAL>(x[k], t[k], w[k], pw[k], gamma);
    if constexpr (STORE_LOSS) {
      l[k] = r.loss;
    } else {
      sum += r.loss;
    }
    g[k] = r.grad * grad_scale;
  }
  return sum;
}

// fp16/bf16 values go through fp32 scratch (a conversion loop, then the vectorised fp32 loop), and the
// gradient back through a conversion loop (bce_blocks, bce_rows); both use the branch-free conversions
// of vec_math.h, which vectorise (c10's did not: `omp simd` on them had measured slower).
template <typename T>
PYCMLT_ALWAYS_INLINE const float* as_float(const T* v, int64_t n, float* scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) scratch[k] = load_float(v[k]);
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

// Row i of a broadcast weight from column j0 on, as contiguous floats for one chunk: a pointer into the
// tensor when it has C columns, otherwise `buf` (one chunk long) filled with the row's single value
// (refilled only when it changes).
struct RowView {
  const Broadcast2d& b;
  float* buf;
  int64_t chunk;
  float last = 0.f;
  bool filled = false;
  const float* row(int64_t i, int64_t j0) {
    if (b.data && b.cols > 1) return b.data + (b.rows > 1 ? i * b.cols : 0) + j0;
    const float v = b.data ? b.data[b.rows > 1 ? i : 0] : 1.f;
    if (!filled || v != last) {
      std::fill(buf, buf + chunk, v);
      last = v;
      filled = true;
    }
    return buf;
  }
};

// Contiguous rows (row stride C for logits, targets and gradient) with C <= kFlatMaxC go through
// blocks of kFlatElems / C whole rows, each ONE loop over its rows * C elements (bce_blocks): with few
// classes the per-row loop of bce_rows is mostly call, set-up, remainder and horizontal sum. Measured
// (one thread, AVX-512, N = 2048 and 8192, op alone, fp32): blocks 8-17x faster than rows at C = 2,
// 1.4-1.6x at C = 16, 1.05-1.2x at C = 48-128 (bf16 alike or better); from C = 256 on both are the same
// within noise, so wider rows keep the row path. Blocks of 512-2048 elements are equally fast, 4096 is
// slower at C = 2.
constexpr int64_t kFlatElems = 1024;
constexpr int64_t kFlatMaxC = 256;

// Everything a range of work needs (shared by the threads).
struct BceArgs {
  int64_t N = 0, C = 0;
  int64_t x_stride = 0, t_stride = 0, grad_stride = 0;
  Broadcast2d w, pw;
  float gamma = 0.f, grad_scale = 1.f;
  float* loss_elem = nullptr;  // [N, C] element losses (reduction none), else nullptr
  float* partial = nullptr;    // loss sums per unit (a row, or a block of rows); unused with loss_elem
  int64_t block_rows = 0;      // rows per block (flat path), 0: row path
};

// A block's weights as rows * C contiguous floats (rows [i0, i0 + rows)): the tensor itself when it is
// a full [N, C]; `tile` otherwise, which holds the weights of every block already (filled once by
// fill_fixed_tile) when they do not depend on the row, else is refilled here with one value per row.
PYCMLT_ALWAYS_INLINE const float* block_weights(const Broadcast2d& b, int64_t i0, int64_t rows, int64_t C,
                                                float* tile) {
  if (!b.data || b.rows == 1) return tile;
  if (b.cols > 1) return b.data + i0 * C;
  for (int64_t r = 0; r < rows; ++r) {
    const float v = b.data[i0 + r];
    float* tr = tile + r * C;
    for (int64_t j = 0; j < C; ++j) tr[j] = v;
  }
  return tile;
}
void fill_fixed_tile(const Broadcast2d& b, int64_t rows, int64_t C, float* tile) {
  if (b.data && b.rows > 1) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < C; ++j) tile[r * C + j] = b.data ? b.data[b.cols > 1 ? j : 0] : 1.f;
}

// Blocks [begin, end) of a.block_rows rows (the last one may be shorter), each one flat loop over
// its elements; the loss sum of block b goes to a.partial[b]. grad may be the logits themselves (the
// in-place op): each element is read before it is written, fp16/bf16 blocks are converted whole first.
template <typename T, typename U, int FOCAL, bool STORE_LOSS>
PYCMLT_ALWAYS_INLINE void bce_blocks(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin,
                                     int64_t end) {
  constexpr bool kFloatX = std::is_same_v<T, float>;
  const int64_t C = a.C, R = a.block_rows, cap_rows = std::min(R, a.N), cap = cap_rows * C;
  std::vector<float> wtile(cap), pwtile(cap), xbuf(kFloatX ? 0 : cap), tbuf(std::is_same_v<U, float> ? 0 : cap);
  std::vector<float> gbuf(kFloatX && grad ? 0 : cap);
  fill_fixed_tile(a.w, cap_rows, C, wtile.data());
  fill_fixed_tile(a.pw, cap_rows, C, pwtile.data());
  for (int64_t b = begin; b < end; ++b) {
    const int64_t i0 = b * R, rows = std::min(R, a.N - i0), n = rows * C, off = i0 * C;
    const float* xf = as_float(x + off, n, xbuf.data());
    const float* tf = as_float(t + off, n, tbuf.data());
    const float* wf = block_weights(a.w, i0, rows, C, wtile.data());
    const float* pwf = block_weights(a.pw, i0, rows, C, pwtile.data());
    float* gf;
    if constexpr (kFloatX) {
      gf = grad ? grad + off : gbuf.data();
    } else {
      gf = gbuf.data();
    }
    const float s = bce_elems<FOCAL, STORE_LOSS>(xf, tf, wf, pwf, a.gamma, a.grad_scale, n,
                                                 STORE_LOSS ? a.loss_elem + off : nullptr, gf);
    if constexpr (!STORE_LOSS) a.partial[b] = s;
    if constexpr (!kFloatX) {
      if (grad) {
        T* go = grad + off;
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) go[k] = store_as<T>(gf[k]);
      }
    }
  }
}

// Rows [begin, end) one at a time (strided or expanded rows, or many classes), each in chunks of at
// most kRowChunk columns so that the fp32 scratch (converted fp16/bf16 logits, targets and gradient,
// filled weights) stays in L1 however wide the row; the loss sum of row i goes to a.partial[i].
// Whole-row scratch had measured 0.85-0.9x torch.compile for bf16 at C >= 32768 (8-40 ms).
constexpr int64_t kRowChunk = 2048;

template <typename T, typename U, int FOCAL, bool STORE_LOSS>
PYCMLT_ALWAYS_INLINE void bce_rows(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin, int64_t end) {
  constexpr bool kFloatX = std::is_same_v<T, float>;
  const int64_t C = a.C, CH = std::max<int64_t>(1, std::min(C, kRowChunk));
  std::vector<float> wbuf(CH), pwbuf(CH), xbuf(kFloatX ? 0 : CH), tbuf(std::is_same_v<U, float> ? 0 : CH);
  std::vector<float> gbuf(kFloatX && grad ? 0 : CH);
  RowView wv{a.w, wbuf.data(), CH}, pwv{a.pw, pwbuf.data(), CH};
  for (int64_t i = begin; i < end; ++i) {
    const T* xi = x + i * a.x_stride;
    const U* ti = t + i * a.t_stride;
    T* gi = grad ? grad + i * a.grad_stride : nullptr;
    float s = 0.f;
    for (int64_t j0 = 0; j0 < C; j0 += CH) {
      const int64_t len = std::min(CH, C - j0);
      const float* xr = as_float(xi + j0, len, xbuf.data());
      const float* tr = as_float(ti + j0, len, tbuf.data());
      float* gc;
      if constexpr (kFloatX) {
        gc = gi ? gi + j0 : gbuf.data();
      } else {
        gc = gbuf.data();
      }
      s += bce_elems<FOCAL, STORE_LOSS>(xr, tr, wv.row(i, j0), pwv.row(i, j0), a.gamma, a.grad_scale, len,
                                        STORE_LOSS ? a.loss_elem + i * C + j0 : nullptr, gc);
      if constexpr (!kFloatX) {
        if (gi) {
          T* go = gi + j0;
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) go[j] = store_as<T>(gc[j]);
        }
      }
    }
    if constexpr (!STORE_LOSS) a.partial[i] = s;
  }
}

// Units [begin, end): blocks of rows (a.block_rows > 0) or rows, with focal and the loss storage resolved.
template <typename T, typename U, int FOCAL, bool STORE_LOSS>
PYCMLT_ALWAYS_INLINE void bce_range_impl(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin,
                                         int64_t end) {
  if (a.block_rows > 0) {
    bce_blocks<T, U, FOCAL, STORE_LOSS>(x, t, grad, a, begin, end);
  } else {
    bce_rows<T, U, FOCAL, STORE_LOSS>(x, t, grad, a, begin, end);
  }
}
template <typename T, typename U, bool STORE_LOSS>
PYCMLT_ALWAYS_INLINE void bce_range_focal(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin,
                                          int64_t end) {
  switch (bce_focal_mode(a.gamma)) {
    case kBceFocalSquare:
      return bce_range_impl<T, U, kBceFocalSquare, STORE_LOSS>(x, t, grad, a, begin, end);
    case kBceFocalPow:
      return bce_range_impl<T, U, kBceFocalPow, STORE_LOSS>(x, t, grad, a, begin, end);
    default:
      return bce_range_impl<T, U, kBceNoFocal, STORE_LOSS>(x, t, grad, a, begin, end);
  }
}
template <typename T, typename U>
PYCMLT_ALWAYS_INLINE void bce_range(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin, int64_t end) {
  if (a.loss_elem) {
    bce_range_focal<T, U, true>(x, t, grad, a, begin, end);
  } else {
    bce_range_focal<T, U, false>(x, t, grad, a, begin, end);
  }
}

// One non-template, multi-versioned entry per (logits, targets) dtype pair, called once per range of
// work (the row and block code inlined inside), so that the loops are compiled for AVX-512/AVX2
// without a dispatched call per row.
#define PYCMLT_BCE_RANGE_ENTRY(NAME, T, U)                                                                  \
  PYCMLT_MULTIVERSION void NAME(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin, int64_t end) { \
    bce_range<T, U>(x, t, grad, a, begin, end);                                                            \
  }                                                                                                        \
  inline void bce_range_dispatch(const T* x, const U* t, T* grad, const BceArgs& a, int64_t begin,          \
                                 int64_t end) {                                                            \
    NAME(x, t, grad, a, begin, end);                                                                       \
  }
PYCMLT_BCE_RANGE_ENTRY(bce_range_float, float, float)
PYCMLT_BCE_RANGE_ENTRY(bce_range_half, c10::Half, c10::Half)
PYCMLT_BCE_RANGE_ENTRY(bce_range_half_f32, c10::Half, float)
PYCMLT_BCE_RANGE_ENTRY(bce_range_bfloat16, c10::BFloat16, c10::BFloat16)
PYCMLT_BCE_RANGE_ENTRY(bce_range_bfloat16_f32, c10::BFloat16, float)
#undef PYCMLT_BCE_RANGE_ENTRY

void check_pair(const at::Tensor& logits, const at::Tensor& targets) {
  TORCH_CHECK_VALUE(logits.dim() == 2, "logits must be 2-D [N, C], got shape ", logits.sizes());
  TORCH_CHECK_VALUE(targets.sizes() == logits.sizes(), "targets must have the shape of logits ", logits.sizes(),
                    ", got ", targets.sizes());
  TORCH_CHECK_TYPE(targets.scalar_type() == logits.scalar_type() || targets.scalar_type() == at::kFloat,
                   "targets must be float32 or logits' dtype (", logits.scalar_type(), "), got ",
                   targets.scalar_type());
}

// Rows per block of the flat path, or 0 for the row path: blocks need every row stride equal to C.
int64_t flat_block_rows(const BceArgs& a, bool grad) {
  const int64_t C = a.C;
  if (C < 1 || C > kFlatMaxC || a.x_stride != C || a.t_stride != C || (grad && a.grad_stride != C)) return 0;
  return std::max<int64_t>(1, kFlatElems / C);
}

// Runs every row of `a` (strides, layout and loss sums filled in here) over threads, with the targets'
// dtype resolved (logits' own dtype or float32); returns the sum of the losses in float64 (0 when
// they are stored per element). Sums are fp32 per unit (row or block, fixed boundaries, so the result
// does not depend on the number of threads), added in float64.
template <typename T>
double bce_run(const at::Tensor& logits, const at::Tensor& targets, BceArgs a, T* grad) {
  a.N = logits.size(0);
  a.C = logits.size(1);
  a.x_stride = logits.stride(0);
  a.t_stride = targets.stride(0);
  a.block_rows = flat_block_rows(a, grad != nullptr);
  const int64_t R = a.block_rows;
  const int64_t units = R > 0 ? (a.N + R - 1) / R : a.N;
  std::vector<float> partial(a.loss_elem ? 0 : units);
  a.partial = partial.data();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(R > 0 ? R * a.C : a.C, 1));
  const T* x = logits.data_ptr<T>();
  const bool same = targets.scalar_type() == logits.scalar_type();
  at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    if (same) {
      bce_range_dispatch(x, targets.data_ptr<T>(), grad, a, begin, end);
    } else {
      bce_range_dispatch(x, targets.data_ptr<float>(), grad, a, begin, end);
    }
  });
  double total = 0.0;
  for (const float p : partial) total += p;
  return total;
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
  BceArgs a;
  a.w = broadcast_arg(weight, N, C, "weight");
  a.pw = broadcast_arg(pos_weight, N, C, "pos_weight");
  a.gamma = static_cast<float>(focal_gamma);
  const double count = static_cast<double>(N) * static_cast<double>(C);
  a.grad_scale = reduction == kMean ? static_cast<float>(1.0 / count) : 1.f;
  a.grad_stride = C;
  at::Tensor loss_elem = reduction == kNone ? empty_output({N, C}, logits.options().dtype(at::kFloat)) : at::Tensor();
  a.loss_elem = reduction == kNone ? loss_elem.data_ptr<float>() : nullptr;
  at::Tensor grad = compute_grad ? empty_output({N, C}, logits.options()) : at::empty({0}, logits.options());
  double total = 0.0;
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_bce_cpu", [&] {
    total = bce_run<scalar_t>(logits, targets, a, compute_grad ? grad.data_ptr<scalar_t>() : nullptr);
  });
  if (reduction == kNone) return {loss_elem, grad};
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
  BceArgs a;
  a.w = broadcast_arg(weight, N, C, "weight");
  a.pw = broadcast_arg(pos_weight, N, C, "pos_weight");
  a.gamma = static_cast<float>(focal_gamma);
  a.grad_scale = static_cast<float>(grad_scale);
  a.grad_stride = logits.stride(0);
  double total = 0.0;
  PYCMLT_DISPATCH_FLOAT_TYPES(logits.scalar_type(), "cb_bce_grad_inplace_cpu", [&] {
    total = bce_run<scalar_t>(logits, targets, a, logits.data_ptr<scalar_t>());
  });
  return at::scalar_tensor(total, logits.options().dtype(at::kFloat));
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CPU, m) {
  m.impl("cb_bce", &cb_bce_cpu);
  m.impl("cb_bce_grad_inplace", &cb_bce_grad_inplace_cpu);
}

}  // namespace pycmlt
