"""nn.Module wrappers of the pycmlt ops, holding class statistics as buffers."""
from pycmlt.nn.contrastive import AlignmentLoss, CrossModalContrastiveLoss
from pycmlt.nn.cross_entropy import ClassBalancedCrossEntropy

__all__ = ["ClassBalancedCrossEntropy", "CrossModalContrastiveLoss", "AlignmentLoss"]
