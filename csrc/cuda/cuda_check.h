// The one way pycmlt checks CUDA calls, so that a failure names the op and CUDA's own description of
// the error (cudaGetErrorName / cudaGetErrorString), never a bare integer. Torch-free: the kernels
// (nvcc) use PYCMLT_CUDA_RETURN_IF_ERROR to hand an error back through their int-returning launch
// interface; the torch glue (host compiler) turns a non-zero code into a RuntimeError with
// PYCMLT_CHECK_CUDA, which expands to TORCH_CHECK and so is only usable where torch is included.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

namespace pycmlt {

// "pycmlt <op> CUDA launch failed: <description> (<cudaErrorName> = <code>)".
inline std::string cuda_error_message(int code, const char* op) {
  const auto err = static_cast<cudaError_t>(code);
  return std::string("pycmlt ") + op + " CUDA launch failed: " + cudaGetErrorString(err) + " (" +
         cudaGetErrorName(err) + " = " + std::to_string(code) + ")";
}

}  // namespace pycmlt

// Evaluates a cudaError_t expression; returns it from the enclosing function unless it is cudaSuccess.
#define PYCMLT_CUDA_RETURN_IF_ERROR(expr)                         \
  do {                                                            \
    const cudaError_t pycmlt_cuda_err_ = (expr);                  \
    if (pycmlt_cuda_err_ != cudaSuccess) return pycmlt_cuda_err_; \
  } while (0)

// Torch glue only: raises (TORCH_CHECK) with cuda_error_message when `code` (a launch_* result) is not 0.
#define PYCMLT_CHECK_CUDA(code, op)                                                             \
  do {                                                                                          \
    const int pycmlt_cuda_code_ = (code);                                                       \
    TORCH_CHECK(pycmlt_cuda_code_ == 0, ::pycmlt::cuda_error_message(pycmlt_cuda_code_, (op))); \
  } while (0)
