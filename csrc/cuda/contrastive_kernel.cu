// CUDA kernels of the cross-modal contrastive statistics and their gradient (docs/ops/contrastive.md; maths in
// csrc/cpu/contrastive.cpp). Tiled SIMT kernels with fp32 accumulation (no tensor cores; the Triton
// kernels use tensor cores through tl.dot): a block owns 64 rows of a and streams 64-column tiles of
// b; the raw dot products of a 64 x 64 tile are accumulated from 32-wide slices of D staged in shared
// memory (each of the 256 threads computes a 4 x 4 micro-tile: rows ty + 16 i, columns tx + 16 j),
// then scaled by s u_i v_j (the normalisation), so S is never written to memory.
//  * row_stats_kernel: running (max, sum of exp) and the positive sum per row, reduced over the 16
//    threads sharing a row with warp shuffles.
//  * row_grad_kernel: recomputes each tile, forms G_ij * s * v_j in shared memory and accumulates
//    dL/da^ = G' @ b for a slice of D held in shared memory (the whole of D when it fits, else
//    grid.y slices, each recomputing the tiles).
// The column direction runs the same kernels on (b, a).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/contrastive_kernel.h"
#include "cuda/cuda_check.h"

namespace pycmlt {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 64;    // rows of a per block
constexpr int kBN = 64;    // rows of b (columns of S) per tile
constexpr int kBK = 32;    // slice of D staged per step
constexpr int kPad = 65;   // padded length of shared rows (conflict-free transposed stores)
constexpr int kDChunk = 64;
constexpr int kStageFloats = 2 * kBK * kPad;  // As + Bs, reused as the [kBN][kPad] chunk of b
static_assert(kStageFloats >= kBN * kPad, "stage buffer must hold a chunk of b");
static_assert(kBM == 64 && kBN == 64 && kThreads == 256, "the 16 x 16 thread grid covers 64 x 64 tiles");
constexpr float kNegInf = -INFINITY;

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// Reductions over the 16 consecutive lanes (one row group) of a half warp.
__device__ __forceinline__ float group_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float group_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// dst[k][r] = x[r0 + r][k0 + k] for r < 64, k < kBK (0 outside the matrix).
template <typename T>
__device__ __forceinline__ void stage_slice(const T* x, int64_t stride, int64_t rows, int64_t d, int64_t r0,
                                            int64_t k0, float* dst) {
  for (int e = threadIdx.x; e < kBM * kBK; e += kThreads) {
    const int r = e / kBK, k = e % kBK;
    const int64_t gr = r0 + r, gk = k0 + k;
    dst[k * kPad + r] = (gr < rows && gk < d) ? load_f(x + gr * stride + gk) : 0.f;
  }
}

// acc[i][j] = <a[r0 + ty + 16 i], b[c0 + tx + 16 j]> (raw rows). Ends with __syncthreads.
template <typename T>
__device__ __forceinline__ void tile_dots(const ContrastiveRows& r, int64_t r0, int64_t c0, float* stage,
                                          float acc[4][4]) {
  const T* a = static_cast<const T*>(r.a);
  const T* b = static_cast<const T*>(r.b);
  float* As = stage;
  float* Bs = stage + kBK * kPad;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int64_t k0 = 0; k0 < r.d; k0 += kBK) {
    stage_slice(a, r.stride_a, r.n, r.d, r0, k0, As);
    stage_slice(b, r.stride_b, r.m, r.d, c0, k0, Bs);
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kBK; ++k) {
      float af[4], bf[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) af[i] = As[k * kPad + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bf[j] = Bs[k * kPad + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
    }
    __syncthreads();
  }
}

struct RowSetup {
  int64_t row[4];
  bool ok[4];
  float su[4];      // s * u_i (0 outside)
  int64_t label[4];
};

__device__ __forceinline__ RowSetup setup_rows(const ContrastiveRows& r, int64_t r0, float s) {
  RowSetup rs;
  const int ty = threadIdx.x / 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    rs.row[i] = r0 + ty + 16 * i;
    rs.ok[i] = rs.row[i] < r.n;
    rs.su[i] = rs.ok[i] ? s * r.u[rs.row[i]] : 0.f;
    rs.label[i] = (r.labels_a && rs.ok[i]) ? r.labels_a[rs.row[i]] : 0;
  }
  return rs;
}

struct ColSetup {
  int64_t col[4];
  bool ok[4];
  float v[4];
  int64_t label[4];
};

__device__ __forceinline__ ColSetup setup_cols(const ContrastiveRows& r, int64_t c0) {
  ColSetup cs;
  const int tx = threadIdx.x % 16;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    cs.col[j] = c0 + tx + 16 * j;
    cs.ok[j] = cs.col[j] < r.m;
    cs.v[j] = cs.ok[j] ? r.v[cs.col[j]] : 0.f;
    cs.label[j] = (r.labels_b && cs.ok[j]) ? r.labels_b[cs.col[j]] : 0;
  }
  return cs;
}

__device__ __forceinline__ bool is_positive(const ContrastiveRows& r, const RowSetup& rs, const ColSetup& cs, int i,
                                            int j) {
  if (!rs.ok[i] || !cs.ok[j]) return false;
  return r.labels_a ? rs.label[i] == cs.label[j] : cs.col[j] == rs.row[i] + r.diag;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) row_stats_kernel(ContrastiveRows r, float* lse_out, float* pos_out) {
  __shared__ float stage[kStageFloats];
  const int tx = threadIdx.x % 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const float s = expf(*r.logit_scale);
  // Raw-unit similarities u_i v_j <a_i, b_j> (s = 1 in setup_rows): the running max m is raw and every
  // exponent is s * (x - m) <= 0, whatever s is (s x - s m, or an FMA contraction of it, overflows the
  // max element's exponent once s x ~ 1e10). lse = s m + log(l) at the end.
  const RowSetup rs = setup_rows(r, r0, 1.f);
  float m[4], l[4], p[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = kNegInf;
    l[i] = 0.f;
    p[i] = 0.f;
  }
  for (int64_t c0 = 0; c0 < r.m; c0 += kBN) {
    float acc[4][4];
    tile_dots<T>(r, r0, c0, stage, acc);
    const ColSetup cs = setup_cols(r, c0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float sv[4];
      float tmax = kNegInf;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sv[j] = cs.ok[j] ? acc[i][j] * rs.su[i] * cs.v[j] : kNegInf;
        tmax = fmaxf(tmax, sv[j]);
      }
      tmax = group_max(tmax);
      const float m_new = fmaxf(m[i], tmax);
      const float shift = m_new == kNegInf ? 0.f : m_new;
      float e = 0.f, ps = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        e += cs.ok[j] ? __expf(s * (sv[j] - shift)) : 0.f;
        ps += is_positive(r, rs, cs, i, j) ? sv[j] : 0.f;
      }
      e = group_sum(e);
      ps = group_sum(ps);
      l[i] = (m[i] == kNegInf ? 0.f : l[i] * __expf(s * (m[i] - shift))) + e;
      m[i] = m_new;
      p[i] += ps;
    }
  }
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (!rs.ok[i]) continue;
      lse_out[rs.row[i]] = l[i] > 0.f ? s * m[i] + logf(l[i]) : (l[i] != l[i] ? l[i] : s * m[i]);
      pos_out[rs.row[i]] = s * p[i];
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) row_grad_kernel(ContrastiveRows r, ContrastiveGrad g, int64_t d_slice) {
  extern __shared__ float smem[];
  float* stage = smem;
  float* Gs = smem + kStageFloats;           // [kBM][kPad]
  float* acc_s = Gs + kBM * kPad;            // [kBM][d_slice + 16]
  const int64_t acc_stride = d_slice + 16;   // +16: the two row groups of a warp hit different banks
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t d0 = static_cast<int64_t>(blockIdx.y) * d_slice;
  const int64_t dl = d0 + d_slice <= r.d ? d_slice : r.d - d0;
  const T* b = static_cast<const T*>(r.b);
  const float s = expf(*r.logit_scale);
  const RowSetup rs = setup_rows(r, r0, s);
  float lse[4], glse[4], gpos[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    lse[i] = (g.row_glse && rs.ok[i]) ? g.row_lse[rs.row[i]] : 0.f;
    glse[i] = (g.row_glse && rs.ok[i]) ? g.row_glse[rs.row[i]] : 0.f;
    gpos[i] = (g.row_gpos && rs.ok[i]) ? g.row_gpos[rs.row[i]] : 0.f;
  }
  for (int64_t e = threadIdx.x; e < kBM * acc_stride; e += kThreads) acc_s[e] = 0.f;
  // (the first tile_dots synchronises before acc_s is touched again)

  for (int64_t c0 = 0; c0 < r.m; c0 += kBN) {
    float acc[4][4];
    tile_dots<T>(r, r0, c0, stage, acc);
    const ColSetup cs = setup_cols(r, c0);
    float clse[4], gclse[4], gcpos[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      clse[j] = (g.col_glse && cs.ok[j]) ? g.col_lse[cs.col[j]] : 0.f;
      gclse[j] = (g.col_glse && cs.ok[j]) ? g.col_glse[cs.col[j]] : 0.f;
      gcpos[j] = (g.col_gpos && cs.ok[j]) ? g.col_gpos[cs.col[j]] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float gij = 0.f;
        if (rs.ok[i] && cs.ok[j]) {
          const float sv = acc[i][j] * rs.su[i] * cs.v[j];
          // Softmax probabilities (<= 1): the exponent is clamped at 0 so that rounding differences
          // between S here and the lse of the forward pass cannot overflow it for large S.
          if (g.row_glse) gij += glse[i] * __expf(fminf(sv - lse[i], 0.f));
          if (g.col_glse) gij += gclse[j] * __expf(fminf(sv - clse[j], 0.f));
          if (is_positive(r, rs, cs, i, j)) gij += gpos[i] + gcpos[j];
          gij *= s * cs.v[j];
        }
        Gs[(ty + 16 * i) * kPad + tx + 16 * j] = gij;
      }
    }
    __syncthreads();
    float* Bd = stage;  // [kBN][kPad]: b[c0 + jj][d0 + dc + dd]
    for (int64_t dc = 0; dc < dl; dc += kDChunk) {
      for (int e = threadIdx.x; e < kBN * kDChunk; e += kThreads) {
        const int jj = e / kDChunk, dd = e % kDChunk;
        const int64_t gc = c0 + jj;
        Bd[jj * kPad + dd] = (gc < r.m && dc + dd < dl) ? load_f(b + gc * r.stride_b + d0 + dc + dd) : 0.f;
      }
      __syncthreads();
      float o[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int q = 0; q < 4; ++q) o[i][q] = 0.f;
#pragma unroll 8
      for (int jj = 0; jj < kBN; ++jj) {
        float gi[4], bd[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) gi[i] = Gs[(ty + 16 * i) * kPad + jj];
#pragma unroll
        for (int q = 0; q < 4; ++q) bd[q] = Bd[jj * kPad + tx + 16 * q];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int q = 0; q < 4; ++q) o[i][q] = fmaf(gi[i], bd[q], o[i][q]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int64_t dd = dc + tx + 16 * q;
          if (dd < dl) acc_s[(ty + 16 * i) * acc_stride + dd] += o[i][q];
        }
      __syncthreads();
    }
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < kBM * dl; e += kThreads) {
    const int64_t ri = e / dl, dd = e % dl;
    const int64_t row = r0 + ri;
    if (row < r.n) g.out[row * r.d + d0 + dd] = acc_s[ri * acc_stride + dd];
  }
}

// The opt-in shared memory per block of the current device (48 KiB if it reports none).
cudaError_t max_optin_shared_bytes(int* bytes) {
  int device = 0;
  PYCMLT_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  PYCMLT_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (*bytes <= 0) *bytes = 48 * 1024;
  return cudaSuccess;
}

template <typename T>
cudaError_t launch_stats_typed(const ContrastiveRows& r, float* lse, float* pos) {
  const unsigned blocks = static_cast<unsigned>((r.n + kBM - 1) / kBM);
  row_stats_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(r.stream)>>>(r, lse, pos);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_grad_typed(const ContrastiveRows& r, const ContrastiveGrad& g) {
  const size_t fixed = static_cast<size_t>(kStageFloats + kBM * kPad) * sizeof(float);
  const int64_t full = (r.d + kDChunk - 1) / kDChunk * kDChunk;
  int optin_bytes = 0;
  PYCMLT_CUDA_RETURN_IF_ERROR(max_optin_shared_bytes(&optin_bytes));
  const int64_t limit = optin_bytes;
  int64_t fit = (limit - static_cast<int64_t>(fixed)) / static_cast<int64_t>(kBM * sizeof(float)) - 16;
  fit = fit / kDChunk * kDChunk;
  const int64_t d_slice = std::max<int64_t>(kDChunk, std::min(full, fit));
  const size_t bytes = fixed + static_cast<size_t>(kBM) * static_cast<size_t>(d_slice + 16) * sizeof(float);
  if (bytes > 48 * 1024) {
    PYCMLT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(row_grad_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     static_cast<int>(bytes)));
  }
  const dim3 grid(static_cast<unsigned>((r.n + kBM - 1) / kBM), static_cast<unsigned>((r.d + d_slice - 1) / d_slice));
  row_grad_kernel<T><<<grid, kThreads, bytes, static_cast<cudaStream_t>(r.stream)>>>(r, g, d_slice);
  return cudaGetLastError();
}

}  // namespace

int launch_contrastive_row_stats(const ContrastiveRows& r, float* lse, float* pos) {
  if (r.n == 0) return 0;
  switch (r.dtype) {
    case DType::kFloat32: return static_cast<int>(launch_stats_typed<float>(r, lse, pos));
    case DType::kFloat16: return static_cast<int>(launch_stats_typed<__half>(r, lse, pos));
    case DType::kBFloat16: return static_cast<int>(launch_stats_typed<__nv_bfloat16>(r, lse, pos));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int launch_contrastive_row_grad(const ContrastiveRows& r, const ContrastiveGrad& g) {
  if (r.n == 0 || r.d == 0) return 0;
  switch (r.dtype) {
    case DType::kFloat32: return static_cast<int>(launch_grad_typed<float>(r, g));
    case DType::kFloat16: return static_cast<int>(launch_grad_typed<__half>(r, g));
    case DType::kBFloat16: return static_cast<int>(launch_grad_typed<__nv_bfloat16>(r, g));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace pycmlt
