// Declares every pycmlt op schema once. CPU kernels live in csrc/cpu, CUDA kernels in csrc/cuda, the
// autograd of cb_cross_entropy and cb_bce in csrc/autograd.cpp; Python adds the fake (meta) kernels, the
// other autograd formulas and the *_grad_reference kernels (pycmlt/ops).
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
  // Class-balanced softmax cross-entropy (docs/ops/cross_entropy.md) with the gradient computed in the same pass.
  // reduction: 0 none, 1 mean, 2 sum. Returns (loss fp32: [N] or [], d loss / d logits: [N, C] or [0]).
  m.def(
      "cb_cross_entropy(Tensor logits, Tensor target, Tensor? class_weight, Tensor? margins, "
      "Tensor? logit_bias, float scale, float focal_gamma, float label_smoothing, int ignore_index, "
      "int reduction, bool compute_grad) -> (Tensor, Tensor)");
  // The same loss written in place, for the chunked fused linear + loss (docs/ops/fused_linear.md): logits (a
  // [N, C] buffer with unit column stride) is replaced by aux[0] * d loss / d logits; returns the
  // per-row losses (fp32 [N]). aux = [gradient scale, sum of class weights] (fp32, logits' device),
  // computed once for the whole batch so that a mean's denominator is global across chunks.
  m.def(
      "cb_cross_entropy_grad_inplace(Tensor(a!) logits, Tensor target, Tensor? class_weight, "
      "Tensor? margins, Tensor? logit_bias, Tensor aux, float scale, float focal_gamma, "
      "float label_smoothing, int ignore_index) -> Tensor");
  // The auxiliary of a cross-entropy batch (docs/ops/cross_entropy.md), the one definition behind every
  // backend: aux = [gradient scale (1 / denom for reduction mean, else 1), sum of the class weights (C
  // without weights)] fp32 [2] and denom = the mean's denominator, the sum of the class weights of the
  // non-ignored rows (fp32 []), both on target's device. class_weight: contiguous fp32 [num_classes].
  // The CPU kernel also validates the targets (ValueError); the CUDA one does not (no host synchronisation).
  m.def(
      "ce_loss_aux(Tensor target, Tensor? class_weight, int num_classes, int ignore_index, int reduction) "
      "-> (Tensor aux, Tensor denom)");
  // d loss / d logits of cb_cross_entropy through the differentiable torch reference, times grad_loss: what
  // its autograd kernel returns in a create_graph=True backward (CompositeImplicitAutograd, in Python).
  m.def(
      "cb_cross_entropy_grad_reference(Tensor grad_loss, Tensor logits, Tensor target, Tensor? class_weight, "
      "Tensor? margins, Tensor? logit_bias, float scale, float focal_gamma, float label_smoothing, "
      "int ignore_index, int reduction, bool compute_grad) -> Tensor");
  // Class-balanced sigmoid BCE (docs/ops/bce.md) with the gradient computed in the same pass. logits and
  // targets [N, C] (targets in logits' dtype or float32); weight and pos_weight: fp32 [Nw, Cw] with
  // Nw in {1, N}, Cw in {1, C}, broadcast over [N, C]. Returns (loss fp32: [N, C] for reduction 0,
  // else [], d loss / d logits: [N, C] or [0]).
  m.def(
      "cb_bce(Tensor logits, Tensor targets, Tensor? weight, Tensor? pos_weight, float focal_gamma, "
      "int reduction, bool compute_grad) -> (Tensor, Tensor)");
  // d loss / d logits of cb_bce through the torch reference, times grad_loss (see cb_cross_entropy_grad_reference).
  m.def(
      "cb_bce_grad_reference(Tensor grad_loss, Tensor logits, Tensor targets, Tensor? weight, Tensor? pos_weight, "
      "float focal_gamma, int reduction, bool compute_grad) -> Tensor");
  // In-place BCE gradient for the chunked fused linear + BCE: logits is replaced by
  // grad_scale * d loss / d logits; returns the sum of the losses of its elements (fp32 scalar).
  m.def(
      "cb_bce_grad_inplace(Tensor(a!) logits, Tensor targets, Tensor? weight, Tensor? pos_weight, "
      "float focal_gamma, float grad_scale) -> Tensor");

  // Cross-modal contrastive statistics (docs/ops/contrastive.md), streamed over tiles of S = exp(logit_scale) *
  // normalize(a) @ normalize(b)^T, never holding the N x M matrix. Positives: labels_a[i] == labels_b[j]
  // or, without labels, j == i + diag_offset. Returns fp32 (row_lse [N], row_pos [N], col_lse, col_pos)
  // with col_* of shape [M] when col_stats else [0]: lse = log-sum-exp, pos = sum of S over positives.
  m.def(
      "contrastive_stats(Tensor a, Tensor b, Tensor logit_scale, Tensor? labels_a, Tensor? labels_b, "
      "int diag_offset, bool normalize, bool col_stats) -> (Tensor, Tensor, Tensor, Tensor)");
  // Backward of contrastive_stats: tiles recomputed; the four optional tensors are the incoming
  // gradients of its outputs (None = zero). Returns (grad_a, grad_b, grad_logit_scale fp32 []).
  m.def(
      "contrastive_grad(Tensor a, Tensor b, Tensor logit_scale, Tensor? labels_a, Tensor? labels_b, "
      "int diag_offset, bool normalize, Tensor row_lse, Tensor col_lse, Tensor? grad_row_lse, "
      "Tensor? grad_row_pos, Tensor? grad_col_lse, Tensor? grad_col_pos) -> (Tensor, Tensor, Tensor)");
  // Alignment loss (docs/ops/alignment.md) fused with the normalisation; kind 0 = 1 - cos, 1 = squared distance.
  // Returns (loss fp32: [N] or [], d loss / d a: [N, D] or [0], d loss / d b: [N, D] or [0]).
  m.def(
      "alignment(Tensor a, Tensor b, int kind, bool normalize, int reduction, bool grad_a, bool grad_b) "
      "-> (Tensor, Tensor, Tensor)");
}
