// Torch-free launch interface of the CUDA cross-modal contrastive kernels (raw pointers only);
// csrc/cuda/contrastive.cpp is the torch glue. Both kernels work on "rows" of a against all rows of
// b; the column statistics / gradients are the same kernels on the transposed problem (b, a).
#pragma once
#include <cstdint>

#include "cuda/cb_cross_entropy_kernel.h"  // DType

namespace pycmlt {

struct ContrastiveRows {
  const void* a;               // [n, d] rows with unit inner stride
  const void* b;               // [m, d]
  int64_t stride_a, stride_b;  // elements between rows
  int64_t n, m, d;
  const float* u;              // [n] inverse L2 norms of a (ones without normalisation)
  const float* v;              // [m] inverse L2 norms of b
  const float* logit_scale;    // device scalar; s = exp(*logit_scale)
  const int64_t* labels_a;     // [n] or nullptr: positives are then j == i + diag
  const int64_t* labels_b;     // [m] or nullptr
  int64_t diag;
  DType dtype;
  void* stream;                // cudaStream_t
};

// Per row of a: lse[i] = log sum_j exp(S_ij), pos[i] = sum_j pos_ij S_ij (fp32 device [n]).
int launch_contrastive_row_stats(const ContrastiveRows& r, float* lse, float* pos);

// Incoming gradients of the row statistics (row_*) and of the column statistics (col_*); any
// pointer may be nullptr (zero). out [n, d] fp32 receives dL/da^ (w.r.t. the normalised rows).
struct ContrastiveGrad {
  const float* row_lse;      // [n] (needed with row_glse)
  const float* row_glse;     // [n]
  const float* row_gpos;     // [n]
  const float* col_lse;      // [m] (needed with col_glse)
  const float* col_glse;     // [m]
  const float* col_gpos;     // [m]
  float* out;                // [n, d] contiguous, fully written
};
int launch_contrastive_row_grad(const ContrastiveRows& r, const ContrastiveGrad& g);

}  // namespace pycmlt
