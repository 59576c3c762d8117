// Declares every pycmlt op schema once. CPU kernels live in csrc/cpu, CUDA kernels in csrc/cuda;
// Python adds the fake (meta) kernels and the autograd formulas (pycmlt/ops).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing pycmlt._C loads this library, which runs the TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(pycmlt, m) {
  // Class-balanced softmax cross-entropy (DESIGN 2.1) with the gradient computed in the same pass.
  // reduction: 0 none, 1 mean, 2 sum. Returns (loss fp32: [N] or [], d loss / d logits: [N, C] or [0]).
  m.def(
      "cb_cross_entropy(Tensor logits, Tensor target, Tensor? class_weight, Tensor? margins, "
      "Tensor? logit_bias, float scale, float focal_gamma, float label_smoothing, int ignore_index, "
      "int reduction, bool compute_grad) -> (Tensor, Tensor)");
}
