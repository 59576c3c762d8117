// Torch-free definitions shared by the CUDA launch interfaces (compiled by nvcc and by the host
// compiler of the torch glue).
#pragma once
#include <cstdint>

namespace pycmlt {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

}  // namespace pycmlt
