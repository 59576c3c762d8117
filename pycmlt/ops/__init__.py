"""Fused long-tail and cross-modal loss ops. Each takes `backend="auto"|"torch"|"cpu"|"triton"|"cuda"`."""
from pycmlt.ops._backend import available_backends, get_default_backend, set_default_backend, use_backend
from pycmlt.ops.alignment import alignment_loss, alignment_reference
from pycmlt.ops.class_balance import class_balanced_weights, ldam_margins, logit_adjustment
from pycmlt.ops.contrastive import (
    ContrastiveOutput,
    contrastive_reference,
    contrastive_with_class_weights,
    cross_modal_contrastive,
)
from pycmlt.ops.cross_entropy import (
    class_balanced_cross_entropy,
    cross_entropy_reference,
    cross_entropy_with_class_tensors,
    set_target_checks,
)

__all__ = [
    "available_backends", "get_default_backend", "set_default_backend", "use_backend",
    "class_balanced_weights", "ldam_margins", "logit_adjustment",
    "class_balanced_cross_entropy", "cross_entropy_reference", "cross_entropy_with_class_tensors",
    "set_target_checks",
    "cross_modal_contrastive", "contrastive_reference", "contrastive_with_class_weights", "ContrastiveOutput",
    "alignment_loss", "alignment_reference",
]
