// What this build of pycmlt._C contains, for the Python side to read instead of asking torch's
// dispatcher through a private API: pycmlt::compiled_with_cuda() is true when the CUDA kernels were
// compiled in (PYCMLT_WITH_CUDA, defined by CMakeLists.txt for every source of the library).
#include <torch/library.h>

#ifndef PYCMLT_WITH_CUDA
#error "PYCMLT_WITH_CUDA must be defined by the build (CMakeLists.txt)"
#endif

namespace pycmlt {
namespace {

bool compiled_with_cuda() { return PYCMLT_WITH_CUDA != 0; }

}  // namespace

TORCH_LIBRARY_FRAGMENT(pycmlt, m) { m.def("compiled_with_cuda() -> bool", &compiled_with_cuda); }

}  // namespace pycmlt
