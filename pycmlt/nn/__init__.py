"""nn.Module wrappers of the pycmlt ops, holding class statistics as buffers."""
from pycmlt.nn.bce import ClassBalancedBCE
from pycmlt.nn.contrastive import AlignmentLoss, CrossModalContrastiveLoss
from pycmlt.nn.cross_entropy import ClassBalancedCrossEntropy
from pycmlt.nn.fused_linear import FusedLinearClassBalancedBCE, FusedLinearClassBalancedCrossEntropy

__all__ = ["ClassBalancedCrossEntropy", "ClassBalancedBCE", "FusedLinearClassBalancedCrossEntropy",
           "FusedLinearClassBalancedBCE", "CrossModalContrastiveLoss", "AlignmentLoss"]
