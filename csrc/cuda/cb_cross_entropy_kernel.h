// Torch-free launch interface of the CUDA class-balanced cross-entropy kernels (raw pointers only),
// so the kernels compile with nvcc alone; csrc/cuda/cb_cross_entropy.cpp is the torch glue.
#pragma once
#include <cstdint>

#include "common/ce_row_math.h"
#include "cuda/launch_common.h"

namespace pycmlt {

struct CeLaunch {
  const void* logits;       // [N, C] rows, unit inner stride
  int64_t row_stride;       // elements between rows of logits
  const int64_t* target;    // [N]
  int64_t num_rows;
  CeOptions opt;            // num_classes, per-class pointers (device), scalars
  const float* aux;         // device [2]: gradient scale (1 / mean denominator or 1), sum of class weights
  float* loss_rows;         // device [N]
  void* grad;               // device [N, C] with unit column stride, or nullptr to skip the gradient;
                            // may be the logits themselves (every element is read before it is written)
  int64_t grad_row_stride;  // elements between rows of grad
  DType dtype;
  void* stream;             // cudaStream_t
};

// Launches the kernel; returns the cudaError_t of the launch as an int (0 on success).
int launch_cb_cross_entropy(const CeLaunch& args);

}  // namespace pycmlt
