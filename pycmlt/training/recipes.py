"""What each training method means, in one table: RECIPES maps a method name (TrainConfig.method) to
its Recipe. Config validation, the training loop, the second stage, evaluation and `pycmlt compare`
read this table and nothing else, so adding a method is one entry here plus, when it brings a new
loss, that loss in objective.py (docs/method.md; Kang et al. 2020 for crt and tau-norm; Menon et al.
2021 for post-hoc logit adjustment).

This module is pure data and lookups (no torch, no models): config.py imports it."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_COSINE_SCALE = 16.0
SECOND_STAGE_KINDS = ("retrain-classifier", "tau-normalize", "keep")


@dataclass(frozen=True)
class Recipe:
    """One training method.

    stage: 1 trains the whole network; 2 works on the model of a finished stage-one run (stage1=).
    loss: the classification loss that trains the classifier (a key of objective.CLASSIFICATION_LOSSES).
    multi_label: whether the method runs on multi-label data (its loss has a sigmoid-BCE form).
    classifier: the default classifier (TrainConfig.classifier overrides it).
    cosine_scale: the default logit scale of a cosine classifier (1 when the loss applies its own scale).
    post_hoc_adjust: logits - tau log(prior) at evaluation (TrainConfig.logit_adjust_tau).
    uses_words: trains CMLTNet's word modules; the classification term is then the recipe named by
        TrainConfig.cls_loss, by default `default_cls_loss` (single-label, multi-label).
    stage_one: the method whose model this one builds on (`pycmlt compare` trains it first); required
        input for stage 2, an optional one to reuse for a stage-1 method (logit-adjust).
    second_stage: what is done to the stage-one model: "retrain-classifier" (cRT: a new classifier
        trained on frozen features with class-balanced sampling), "tau-normalize" (weight norms
        rescaled, no training) or "keep" (used as it is; only its evaluation differs)."""

    stage: int = 1
    loss: str = "ce"
    multi_label: bool = False
    classifier: str = "linear"
    cosine_scale: float = DEFAULT_COSINE_SCALE
    post_hoc_adjust: bool = False
    uses_words: bool = False
    default_cls_loss: tuple[str, str] | None = None
    stage_one: str | None = None
    second_stage: str | None = None


RECIPES: dict[str, Recipe] = {
    "ce": Recipe(loss="ce", multi_label=True),
    "cb-focal": Recipe(loss="cb-focal", multi_label=True),
    "ldam-drw": Recipe(loss="ldam-drw", classifier="cosine", cosine_scale=1.0),
    "balanced-softmax": Recipe(loss="balanced-softmax"),
    "logit-adjust": Recipe(loss="ce", post_hoc_adjust=True, stage_one="ce", second_stage="keep"),
    "crt": Recipe(stage=2, loss="ce", multi_label=True, stage_one="ce", second_stage="retrain-classifier"),
    "tau-norm": Recipe(stage=2, loss="ce", multi_label=True, stage_one="ce", second_stage="tau-normalize"),
    "cmltnet": Recipe(multi_label=True, uses_words=True, default_cls_loss=("ldam-drw", "cb-focal")),
}
# cmltnet's cls_loss default before LDAM-DRW (chosen on val on emoji-lt and hanzi-lt) replaced balanced
# softmax: what a run saved with cls_loss null by an earlier version trained with. Runs now save the
# loss they train with (explicit_cls_loss), so a saved null means this and nothing else.
LEGACY_DEFAULT_CLS_LOSS = ("balanced-softmax", "cb-focal")

METHODS = tuple(RECIPES)
# Recipes that can be cmltnet's classification term (TrainConfig.cls_loss): the word-free stage-one ones.
LOSS_METHODS = tuple(m for m, r in RECIPES.items() if r.stage == 1 and not r.uses_words)
MULTI_LABEL_LOSS_METHODS = tuple(m for m in LOSS_METHODS if RECIPES[m].multi_label)
SECOND_STAGE_METHODS = tuple(m for m, r in RECIPES.items() if r.stage == 2)


def classification_recipe(config, multi_label: bool = False) -> str:
    """The method whose recipe trains and reads the classifier: the method itself, or for a method
    with words its cls_loss (default: LDAM-DRW on single-label data, cb-focal on multi-label data,
    where a softmax over classes does not apply)."""
    recipe = RECIPES[config.method]
    if recipe.uses_words:
        return config.cls_loss or recipe.default_cls_loss[int(multi_label)]
    return config.method


def explicit_cls_loss(config, multi_label: bool):
    """The config with a word method's default cls_loss written out for this data (a run saves this,
    so its config.json says which loss trained it, whatever later versions' default is)."""
    if RECIPES[config.method].uses_words and config.cls_loss is None:
        return config.replace(cls_loss=classification_recipe(config, multi_label))
    return config


def saved_cls_loss(stored: dict, multi_label: bool) -> dict:
    """A saved config (dict) with cls_loss as it trained: a word method's null means the default of
    the version that saved it, LEGACY_DEFAULT_CLS_LOSS (runs save it explicitly since then)."""
    method = stored.get("method")
    if method in RECIPES and RECIPES[method].uses_words and stored.get("cls_loss") is None:
        return {**stored, "cls_loss": LEGACY_DEFAULT_CLS_LOSS[int(multi_label)]}
    return stored


def builds_on_stage_one(config) -> bool:
    """Whether the run starts from a stage-one model (stage 2 always; logit-adjust when given stage1)."""
    recipe = RECIPES[config.method]
    return recipe.stage == 2 or (recipe.stage_one is not None and bool(config.stage1))


def post_hoc_adjusted(config) -> bool:
    return RECIPES[classification_recipe(config)].post_hoc_adjust


def cosine_scale(config) -> float:
    """The cosine classifier's logit scale: the configured one, else the recipe's default (1 under
    ldam-drw, whose loss applies ldam_scale to the margin-adjusted cosines; DEFAULT_COSINE_SCALE else)."""
    if config.cosine_scale is not None:
        return config.cosine_scale
    return RECIPES[classification_recipe(config)].cosine_scale


def default_classifier(config) -> str:
    return config.classifier or RECIPES[classification_recipe(config)].classifier
