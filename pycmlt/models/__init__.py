"""CMLTNet and its parts."""
from pycmlt.models.backbones import build_backbone
from pycmlt.models.cmltnet import CMLTNet, CMLTNetConfig, CMLTNetOutput, class_word_profile
from pycmlt.models.heads import CosineClassifier, Fusion, tau_normalize_
from pycmlt.models.resnet_cifar import CifarResNet
from pycmlt.models.text_encoder import WordEncoder

__all__ = ["CMLTNet", "CMLTNetConfig", "CMLTNetOutput", "CifarResNet", "CosineClassifier", "Fusion",
           "WordEncoder", "build_backbone", "class_word_profile", "tau_normalize_"]
