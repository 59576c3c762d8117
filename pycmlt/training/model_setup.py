"""The CMLTNet a run trains, from its TrainConfig and training data: which modules are on (a recipe
with words switches on the word modules), which classifier and scale, and the initial word table."""
from __future__ import annotations

import torch

from pycmlt.models import CMLTNet, CMLTNetConfig, class_word_profile
from pycmlt.training.class_anchors import class_anchor_vectors
from pycmlt.training.config import TrainConfig
from pycmlt.training.recipes import RECIPES, cosine_scale, default_classifier, explicit_cls_loss


def model_config(config: TrainConfig, num_classes: int, vocab_size: int,
                 multi_label: bool = False) -> CMLTNetConfig:
    """The model's settings; a word method's default cls_loss is the one for single- or multi-label data."""
    config = explicit_cls_loss(config, multi_label)
    words = RECIPES[config.method].uses_words
    use_infer = words and config.use_infer
    return CMLTNetConfig(
        cosine_scale=cosine_scale(config), learn_cosine_scale=config.learn_cosine_scale,
        num_classes=num_classes, vocab_size=vocab_size if words else 0, backbone=config.backbone,
        backbone_weights=config.backbone_weights, word_dim=config.word_dim, text_pooling=config.text_pooling,
        use_align=words and config.use_align, use_infer=use_infer, use_fuse=use_infer and config.use_fuse,
        fusion=config.fusion, classifier=default_classifier(config), semantic_head=use_infer and config.semantic_head,
        text_anchors=words and config.text_anchors)


def initial_word_vectors(config: TrainConfig, vocab: list[str]) -> torch.Tensor | None:
    """Pretrained rows of the word table (word_vectors="minilm"), or None for the table's own init."""
    if config.word_vectors == "none" or not RECIPES[config.method].uses_words:
        return None
    from pycmlt.text import pretrained_word_vectors

    # Unit-norm rows, like the table's own initialisation (std e^-1/2 per coordinate); PCA to word_dim.
    return pretrained_word_vectors(list(vocab), source=config.word_vectors, dim=config.word_dim)


def build_model(config: TrainConfig, train_set, device: torch.device) -> CMLTNet:
    """A freshly initialised model (seeded by config.seed) on `device`, channels-last if configured."""
    vocab = list(train_set.vocab)
    mcfg = model_config(config, len(train_set.classes), len(vocab), bool(train_set.multi_label))
    torch.manual_seed(config.seed)
    class_words = (class_word_profile(train_set.word_id_lists(), train_set.targets, mcfg.num_classes, len(vocab))
                   if mcfg.semantic_head else None)
    class_anchors = class_anchor_vectors(train_set) if mcfg.text_anchors else None
    model = CMLTNet(mcfg, word_vectors=initial_word_vectors(config, vocab), class_words=class_words,
                    class_anchors=class_anchors).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
