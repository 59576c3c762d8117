// The kernels' CPU output buffers: at::empty, with large ones advised to use transparent huge pages.
//
// A buffer of 32 MiB or more is fresh mmap'd memory on every call (glibc's mmap threshold never grows
// past 32 MiB, and torch's CPU allocator does not cache), so the kernel's first write to it takes one
// page fault per 4 KiB page: about 40 ms of a 55 ms cross-entropy forward at N=1024, C=32000 on this
// project's CPU machine. With the kernel's madvise(MADV_HUGEPAGE) (transparent huge pages in `madvise`
// mode, the common default) the same buffer faults in 2 MiB pages. Advice only: where it is refused or
// THP is off, nothing changes.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pycmlt {

constexpr int64_t kHugePageAdviceBytes = int64_t{32} << 20;

inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto bytes = static_cast<int64_t>(out.nbytes());
  if (bytes >= kHugePageAdviceBytes && out.device().is_cpu()) {
    constexpr uintptr_t kHuge = uintptr_t{2} << 20;
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t hi = (begin + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace pycmlt
