"""Fused long-tail and cross-modal loss ops. Each takes `backend="auto"|"torch"|"cpu"|"triton"|"cuda"`."""
from pycmlt.ops._backend import BACKENDS, available_backends, get_default_backend, set_default_backend, use_backend
from pycmlt.ops.bce import bce_reference, bce_with_class_tensors, bce_with_weights, class_balanced_bce
from pycmlt.ops.alignment import alignment_loss, alignment_reference
from pycmlt.ops.class_balance import class_balanced_weights, ldam_margins, logit_adjustment
from pycmlt.ops.contrastive import (
    ContrastiveOutput,
    contrastive_reference,
    contrastive_with_class_tensors,
    contrastive_with_class_weights,
    cross_modal_contrastive,
)
from pycmlt.ops.cross_entropy import (
    class_balanced_cross_entropy,
    cross_entropy_reference,
    cross_entropy_with_class_tensors,
    set_target_checks,
)
from pycmlt.ops.loss_options import BCEOptions, CrossEntropyOptions
from pycmlt.ops.fused_linear import (
    default_chunk_rows,
    fused_linear_bce_with_class_tensors,
    fused_linear_bce_with_weights,
    fused_linear_class_balanced_bce,
    fused_linear_class_balanced_cross_entropy,
    fused_linear_cross_entropy_with_class_tensors,
)

__all__ = [
    "BACKENDS", "available_backends", "get_default_backend", "set_default_backend", "use_backend",
    "class_balanced_weights", "ldam_margins", "logit_adjustment", "CrossEntropyOptions", "BCEOptions",
    "class_balanced_cross_entropy", "cross_entropy_reference", "cross_entropy_with_class_tensors",
    "set_target_checks",
    "class_balanced_bce", "bce_reference", "bce_with_class_tensors",
    "fused_linear_class_balanced_cross_entropy", "fused_linear_class_balanced_bce",
    "fused_linear_cross_entropy_with_class_tensors", "fused_linear_bce_with_class_tensors",
    "default_chunk_rows",
    "cross_modal_contrastive", "contrastive_reference", "contrastive_with_class_tensors", "ContrastiveOutput",
    "alignment_loss", "alignment_reference",
    # deprecated names of the second layers above, removed in the next release
    "bce_with_weights", "fused_linear_bce_with_weights", "contrastive_with_class_weights",
]
