// Torch-free launch interface of the CUDA class-balanced BCE kernel (raw pointers only), so the
// kernel compiles with nvcc alone; csrc/cuda/cb_bce.cpp is the torch glue.
#pragma once
#include <cstdint>

#include "cuda/launch_common.h"

namespace pycmlt {

struct BceLaunch {
  const void* logits;       // [N, C] contiguous
  const void* targets;      // [N, C] contiguous, logits' dtype or float32
  bool targets_fp32;        // targets are float32 (else logits' dtype)
  int64_t num_rows;
  int64_t num_cols;
  const float* weight;      // device, nullptr = ones; element (i, j) at i * weight_rs + j * weight_cs
  int64_t weight_rs, weight_cs;
  const float* pos_weight;  // same layout rule as weight
  int64_t pos_weight_rs, pos_weight_cs;
  float focal_gamma;
  float grad_scale;         // the gradient is written multiplied by this
  bool elementwise;         // loss: [N * C] per-element losses, else [bce_grid_blocks(N * C)] partial sums
  float* loss;              // device
  void* grad;               // device [N, C] contiguous in logits' dtype, nullptr to skip; may be the logits
  DType dtype;
  void* stream;             // cudaStream_t
};

constexpr int kBceThreads = 256;

// Number of blocks of the grid-stride launch (= number of partial sums when !elementwise).
inline int64_t bce_grid_blocks(int64_t total) {
  const int64_t blocks = (total + kBceThreads - 1) / kBceThreads;
  return blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks);
}

// Launches the kernel; returns the cudaError_t of the launch as an int (0 on success).
int launch_cb_bce(const BceLaunch& args);

}  // namespace pycmlt
