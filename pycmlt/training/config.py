"""TrainConfig: everything a training run needs, as a dataclass that loads from and saves to
YAML or JSON, so a run can be repeated from its saved config."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

WORD_LOSSES = ("softmax", "bce", "bce-mean")
WORD_WEIGHTINGS = ("discriminative", "class-balanced", "none")
METHODS = ("ce", "cb-focal", "ldam-drw", "balanced-softmax", "logit-adjust", "crt", "tau-norm", "cmltnet")


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
    cls_loss: str | None = None           # classification loss of cmltnet: a loss method (default balanced-softmax)
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
    semantic_head: bool = True            # also score s against class prototypes in the word space
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
    channels_last: bool = True            # NHWC convolutions (about 20% faster on CPU)
    # run
    seed: int = 0
    device: str = "auto"
    backend: str = "auto"                 # what backend="auto" means for the loss ops during the run
    out_dir: str = "runs/default"
    eval_every: int = 0                   # evaluate every k epochs (0: only at the end)
    word_topk: tuple[int, ...] = (1, 5, 10)
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.cls_loss is not None and self.cls_loss not in ("ce", "cb-focal", "ldam-drw", "balanced-softmax",
                                                               "logit-adjust"):
            raise ValueError(f"cls_loss must be a loss method (ce, cb-focal, ldam-drw, balanced-softmax, "
                             f"logit-adjust), got {self.cls_loss!r}")
        if self.method in ("crt", "tau-norm") and not self.stage1:
            raise ValueError(f"method {self.method!r} is a second stage: give stage1=<run folder of a trained model>")
        if self.epochs < 1 and self.method not in ("crt", "tau-norm"):
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.word_loss not in WORD_LOSSES:
            raise ValueError(f"word_loss must be one of {WORD_LOSSES}, got {self.word_loss!r}")
        if self.word_weighting not in WORD_WEIGHTINGS:
            raise ValueError(f"word_weighting must be one of {WORD_WEIGHTINGS}, got {self.word_weighting!r}")
        if self.cosine_scale is not None and not (isinstance(self.cosine_scale, (int, float))
                                                  and math.isfinite(self.cosine_scale) and self.cosine_scale > 0):
            raise ValueError(f"cosine_scale must be a finite number > 0 (or None for the default), "
                             f"got {self.cosine_scale!r}")
        if isinstance(self.word_topk, list):
            self.word_topk = tuple(self.word_topk)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["word_topk"] = list(self.word_topk)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
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

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
