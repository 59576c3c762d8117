// Torch-free launch interface of the CUDA alignment kernel (docs/ops/alignment.md); csrc/cuda/alignment.cpp is
// the torch glue.
#pragma once
#include <cstdint>

#include "cuda/cb_cross_entropy_kernel.h"  // DType

namespace pycmlt {

struct AlignLaunch {
  const void* a;        // [n, d] contiguous
  const void* b;        // [n, d] contiguous
  int64_t n, d;
  int64_t kind;         // AlignKind: 0 cosine, 1 mse
  bool normalize;
  float grad_scale;     // 1 / n for the mean, else 1
  float* loss_rows;     // device [n]
  void* grad_a;         // [n, d] or nullptr
  void* grad_b;         // [n, d] or nullptr
  DType dtype;
  void* stream;         // cudaStream_t
};

int launch_alignment(const AlignLaunch& args);

}  // namespace pycmlt
