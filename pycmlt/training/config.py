"""TrainConfig: everything a training run needs, as a dataclass that loads from and saves to
YAML or JSON, so a run can be repeated from its saved config."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from pycmlt.atomic_write import atomic_write_json
from pycmlt.ops import BACKENDS
from pycmlt.ops._checks import check_finite_scalar
from pycmlt.training.recipes import LOSS_METHODS, METHODS, RECIPES

SELECT_ON = ("last", "val")
PRECISIONS = ("fp32", "bf16", "fp16")
WORD_LOSSES = ("softmax", "bce", "bce-mean")
WORD_WEIGHTINGS = ("discriminative", "class-balanced", "none")


@dataclass
class TrainConfig:
    # data
    dataset: str = "emoji-lt"
    data_root: str | None = None          # folder of an on-disk dataset (nus-wide, vireo-food-172, manifest file)
    image_size: int = 32
    data_seed: int = 0                    # seed of the dataset build/split (kept fixed across model seeds)
    data_options: dict = field(default_factory=dict)  # extra keyword arguments of the dataset builder
    skip_bad: bool = False                # skip (and count) unreadable images instead of failing
    class_balanced_sampling: bool = False
    num_workers: int = 0
    # method
    method: str = "ce"
    cls_loss: str | None = None           # classification loss of cmltnet: a loss method (default ldam-drw;
    #                                       cb-focal on multi-label data); a run saves the one it used
    beta: float = 0.9999                  # class-balanced weights (cb-focal, ldam-drw after DRW)
    focal_gamma: float = 1.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_start_epoch: int | None = None    # default: 80% of the epochs
    logit_adjust_tau: float = 1.0         # balanced-softmax uses 1 in the loss; logit-adjust post hoc
    tau_norm: float = 1.0                 # tau-norm stage two
    stage1: str | None = None             # run folder of the stage-one model (crt, tau-norm; logit-adjust: reuse it)
    crt_epochs: int = 10
    # CMLTNet modules (ablations: --no-align / --no-infer / --no-fuse)
    use_align: bool = True
    use_infer: bool = True
    use_fuse: bool = True
    lambda_align: float = 0.1
    lambda_infer: float = 0.1
    align_temperature: float = 0.1
    word_loss: str = "softmax"            # L_CMI word prediction: "softmax" (multi-positive softmax over the
                                          # vocabulary), "bce" (sum over the vocabulary, mean over images) or
                                          # "bce-mean" (mean over images x vocabulary: each word gets 1/|V|)
    word_weighting: str = "discriminative"  # per-word loss weights: "discriminative" | "class-balanced" | "none"
    word_loss_beta: float = 0.999         # beta of word_weighting="class-balanced" (over word frequency)
    word_dim: int = 128
    word_vectors: str = "none"            # "none" | "minilm" (pretrained initialisation of the word table)
    fusion: str = "concat"
    semantic_head: bool = False           # also score s against class prototypes in the word space (off by
                                          # default: val favoured no head on hanzi-lt and emoji-lt, docs/method.md)
    text_anchors: bool = False            # also score projected h_v against frozen MiniLM class-text anchors
    lambda_anchor: float = 0.0            # weight of the image-anchor contrastive term (needs text_anchors)
    text_pooling: str = "mean"
    # model and optimisation
    backbone: str = "resnet32"
    backbone_weights: str | None = None
    classifier: str | None = None         # "linear" | "cosine"; default by method (cosine for ldam-drw)
    cosine_scale: float | None = None     # s in s * cos(f, w_c) of a cosine classifier; default 16, and 1 under
                                          # ldam-drw (its loss multiplies the margin-adjusted cosines by ldam_scale)
    learn_cosine_scale: bool = False      # train s (a learned temperature) instead of keeping it fixed
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 2
    augment: bool = True
    precision: str = "fp32"               # "fp32" | "bf16" | "fp16" (autocast; fp16 adds loss scaling)
    compile: bool = False                 # torch.compile the model for the training forward
    channels_last: bool = True            # NHWC convolutions (about 20% faster on CPU)
    # run
    seed: int = 0
    device: str = "auto"
    backend: str = "auto"                 # what backend="auto" means for the loss ops during the run
    out_dir: str = "runs/default"
    eval_every: int = 0                   # evaluate on test every k epochs (0: only at the end; select_on="last" only)
    select_on: str = "last"               # "last": test the last epoch; "val": test the epoch best on val (best.pt)
    word_topk: tuple[int, ...] = (1, 5, 10)
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self):
        if isinstance(self.word_topk, list):
            self.word_topk = tuple(self.word_topk)
        validate(self)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["word_topk"] = list(self.word_topk)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a mapping of TrainConfig keys to values (YAML `key: value` lines "
                            f"or a JSON object), got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
            data = {} if data is None else data
        else:
            data = json.loads(text)
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class Rule:
    """What one TrainConfig field accepts: its type, range or choices, and the help text of its flag."""
    help: str
    kind: type = str                      # int, float, str, bool, dict, or tuple (of ints >= 1: word_topk)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False                # None allowed

    def describe(self) -> str:
        """The help text with the accepted values, e.g. 'learning rate (> 0)'."""
        if self.choices:
            return self.help
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return self.help + (f" ({', '.join(bounds)})" if bounds else "")


def _int(help: str, low: int | None = 0, **kw) -> Rule:
    return Rule(help, int, low=low, **kw)


def _real(help: str, low: float | None = 0.0, **kw) -> Rule:
    return Rule(help, float, low=low, **kw)


def _choice(help: str, choices: tuple, **kw) -> Rule:
    return Rule(help, str, choices=tuple(choices), **kw)


# One row per field: the single place that says what a run accepts (TrainConfig and the CLI flags).
RULES: dict[str, Rule] = {
    "dataset": Rule("dataset name: emoji-lt, synthetic, nus-wide, vireo-food-172, manifest"),
    "data_root": Rule("folder of an on-disk dataset (nus-wide, vireo-food-172) or the manifest file", optional=True),
    "image_size": _int("image resolution in pixels", low=1),
    "data_seed": _int("seed of the dataset build and split (kept fixed across model seeds)"),
    "data_options": Rule("extra keyword arguments of the dataset builder (a JSON object)", dict),
    "skip_bad": Rule("skip (and count) unreadable images instead of failing", bool),
    "class_balanced_sampling": Rule("sample every class equally often", bool),
    "num_workers": _int("data-loading worker processes"),
    "method": _choice("training method", METHODS),
    "cls_loss": _choice("classification loss of cmltnet (default ldam-drw; cb-focal on multi-label data)",
                        LOSS_METHODS, optional=True),
    "beta": _real("class-balanced weighting (cb-focal, ldam-drw after DRW)", high=1.0, high_open=True),
    "focal_gamma": _real("focusing parameter of cb-focal"),
    "ldam_max_margin": _real("largest LDAM margin (the rarest class)"),
    "ldam_scale": _real("scale of LDAM's cosine logits", low_open=True),
    "drw_start_epoch": _int("epoch where deferred re-weighting starts (default: 80% of the epochs)", optional=True),
    "logit_adjust_tau": _real("tau of post-hoc logit adjustment", low=None),
    "tau_norm": _real("tau of tau-norm: weights divided by ||w||^tau"),
    "stage1": Rule("run folder of the stage-one model (crt, tau-norm; logit-adjust reuses it)", optional=True),
    "crt_epochs": _int("epochs of classifier re-training (crt)", low=1),
    "use_align": Rule("CMLTNet cross-modal alignment (CMA)", bool),
    "use_infer": Rule("CMLTNet cross-modal inference (CMI)", bool),
    "use_fuse": Rule("fuse the inferred semantic vector into the classifier input", bool),
    "lambda_align": _real("weight of the alignment loss"),
    "lambda_infer": _real("weight of the inference loss"),
    "align_temperature": _real("temperature of the alignment InfoNCE", low_open=True),
    "word_loss": _choice("word-prediction loss of CMI: softmax (multi-positive softmax over the vocabulary), "
                         "bce (summed over the vocabulary), bce-mean (mean over images x vocabulary)", WORD_LOSSES),
    "word_weighting": _choice("per-word weights of the word-prediction loss", WORD_WEIGHTINGS),
    "word_loss_beta": _real("class-balanced word-prediction weights over word frequency", high=1.0,
                            high_open=True),
    "word_dim": _int("dimension of the word space", low=1),
    "word_vectors": _choice("initialisation of the word table", ("none", "minilm")),
    "fusion": _choice("how the semantic vector is fused", ("concat", "gated")),
    "semantic_head": Rule("also score the semantic vector against class prototypes in the word space", bool),
    "text_anchors": Rule("also score the image features against frozen class-text anchors (MiniLM embeddings of "
                         "each class's name and top training words; needs the text extra)", bool),
    "lambda_anchor": _real("weight of the class-wise contrastive term between projected images and the class-text "
                           "anchors (needs text_anchors; temperature align_temperature)"),
    "text_pooling": _choice("pooling of an example's words", ("mean", "attention")),
    "backbone": Rule("resnet20/32/44/56/110, torchvision:<name> or timm:<name>"),
    "backbone_weights": Rule("local weights file of the backbone", optional=True),
    "classifier": _choice("classifier (default by method: cosine for ldam-drw, else linear)", ("linear", "cosine"),
                          optional=True),
    "cosine_scale": _real("logit scale s of a cosine classifier (default 16; 1 under ldam-drw, whose loss scales)",
                          low_open=True, optional=True),
    "learn_cosine_scale": Rule("train the cosine classifier's scale", bool),
    "epochs": _int("training epochs (>= 1; crt and tau-norm: >= 0)"),
    "batch_size": _int("images per step", low=1),
    "lr": _real("learning rate", low_open=True),
    "momentum": _real("SGD momentum", high=1.0, high_open=True),
    "weight_decay": _real("SGD weight decay"),
    "warmup_epochs": _int("epochs of linear learning-rate warm-up"),
    "augment": Rule("random crops and flips", bool),
    "precision": _choice("training precision: fp32, or bf16/fp16 autocast (fp16 with loss scaling)",
                         PRECISIONS),
    "compile": Rule("torch.compile the model for the training forward (the losses are custom ops already)", bool),
    "channels_last": Rule("NHWC convolutions (about 20% faster on CPU)", bool),
    "seed": _int("seed of the model, sampling and augmentation"),
    "device": Rule("auto, cpu, cuda or cuda:<index>"),
    "backend": _choice("what backend='auto' means for the loss ops during the run", BACKENDS),
    "out_dir": Rule("run folder (checkpoints, metrics, plots)"),
    "eval_every": _int("evaluate on the test split every k epochs (0: only at the end)"),
    "select_on": _choice("which epoch's weights are tested: the last, or the best on the val split", SELECT_ON),
    "word_topk": Rule("k values of word recall@k (each >= 1)", tuple),
    "progress": Rule("progress output (a bar on a terminal, one line per epoch otherwise)", bool),
    "tensorboard": Rule("write TensorBoard scalars under <out_dir>/tensorboard", bool),
}


def validate(config: TrainConfig) -> None:
    """TypeError / ValueError naming the first field of `config` that RULES does not accept, and the
    combinations that cannot run (a second stage without stage1, epochs 0 for a first stage)."""
    for name, rule in RULES.items():
        check_field(name, getattr(config, name), rule)
    second_stage = RECIPES[config.method].stage == 2
    if second_stage and not config.stage1:
        raise ValueError(f"method {config.method!r} is a second stage: give stage1=<run folder of a trained model>")
    if config.epochs < 1 and not second_stage:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    if config.lambda_anchor > 0 and not config.text_anchors:
        raise ValueError(f"lambda_anchor={config.lambda_anchor} weights a contrastive term against the class-text "
                         "anchors: it needs text_anchors=True (--text-anchors)")
    if config.select_on == "val" and config.eval_every:
        raise ValueError("eval_every evaluates the test split during training; with select_on='val' every epoch "
                         "is evaluated on val instead (history: val_top1, val_few) and test once at the end: "
                         "set eval_every=0")


def check_field(name: str, value, rule: Rule) -> None:
    if value is None:
        if rule.optional:
            return
        raise TypeError(f"{name} must be given (not null)")
    if rule.kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
    elif rule.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
        if rule.low is not None and value < rule.low:
            raise ValueError(f"{name} must be >= {rule.low}, got {value}")
    elif rule.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
            raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
        check_finite_scalar(name, value, low=rule.low, high=rule.high, low_open=rule.low_open,
                            high_open=rule.high_open)
    elif rule.kind is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a mapping (JSON object), got {type(value).__name__}")
    elif rule.kind is tuple:
        if not isinstance(value, tuple) or not value:
            raise TypeError(f"{name} must be a non-empty list of integers, got {value!r}")
        for k in value:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"{name} must hold integers >= 1, got {value!r}")
    else:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty string, got {value!r}")
        if rule.choices and value not in rule.choices:
            raise ValueError(f"{name} must be one of {rule.choices}, got {value!r}")
