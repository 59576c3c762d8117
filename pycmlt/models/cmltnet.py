"""CMLTNet (docs/method.md): a visual encoder, a text encoder over descriptional words, cross-modal
alignment (CMA), cross-modal inference into the word space (CMI), fusion and a classifier.
Words are privileged information: only training uses them; inference needs images alone.
With CMA, CMI and fusion all off, the model is the plain image baseline."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pycmlt.models.anchor_head import TextAnchorHead
from pycmlt.models.backbones import build_backbone
from pycmlt.models.heads import Fusion, build_classifier
from pycmlt.models.text_encoder import WordEncoder


@dataclass
class CMLTNetConfig:
    num_classes: int
    vocab_size: int = 0
    backbone: str = "resnet32"
    backbone_weights: str | None = None
    word_dim: int = 128          # e: word-embedding / semantic-space dimension
    text_hidden: int = 256       # h_t dimension
    shared_dim: int = 128        # CMA projection dimension
    text_pooling: str = "mean"   # "mean" | "attention"
    use_align: bool = True       # CMA
    use_infer: bool = True       # CMI
    use_fuse: bool = True        # fuse psi(s) into the classifier input
    fusion: str = "concat"       # "concat" | "gated"
    classifier: str = "linear"   # "linear" | "cosine"
    cosine_scale: float = 1.0    # s of a cosine classifier's logits s * cos(f, w_c)
    learn_cosine_scale: bool = False
    semantic_head: bool = False  # add cosine logits between s and class prototypes in the word space
    semantic_scale: float | None = None  # initial scale of those logits (learned); default: the
                                 # classifier's own scale (cosine_scale for a cosine classifier, else 10)
    text_anchors: bool = False   # add cosine logits between projected h_v and frozen class-text anchors
    anchor_dim: int = 384        # width of the text space the anchors live in (MiniLM: 384)

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if (self.use_align or self.use_infer) and self.vocab_size < 1:
            raise ValueError("use_align / use_infer need a vocabulary (vocab_size >= 1)")
        if self.use_fuse and not self.use_infer:
            raise ValueError("use_fuse needs use_infer: fusion consumes the inferred semantic vector s")
        if self.text_anchors and self.anchor_dim < 1:
            raise ValueError(f"anchor_dim must be >= 1 with text_anchors, got {self.anchor_dim}")
        if self.semantic_head and not self.use_infer:
            raise ValueError("semantic_head needs use_infer: it scores the inferred semantic vector s")
        if self.semantic_scale is None:
            self.semantic_scale = self.cosine_scale if self.classifier == "cosine" else 10.0


@dataclass
class CMLTNetOutput:
    logits: torch.Tensor                      # [B, C]
    features: torch.Tensor                    # classifier input f [B, F]
    h_v: torch.Tensor                         # visual features [B, Fv]
    s: torch.Tensor | None = None             # inferred semantic vector (CMI) [B, e]
    z_v: torch.Tensor | None = None           # CMA image projection [B, shared]
    z_t: torch.Tensor | None = None           # CMA text projection [B, shared] (rows with words only used)
    pooled_words: torch.Tensor | None = None  # pooled word embedding [B, e]
    has_words: torch.Tensor | None = None     # [B] bool
    extras: dict = field(default_factory=dict)


def class_word_profile(word_lists, labels, num_classes: int, vocab_size: int) -> torch.Tensor:
    """[C, |V|] description of each class by its training images' words: the fraction of the class's
    images carrying each word, times the word's inverse class frequency log(C / classes using it),
    rows normalised to sum to 1. labels: [N] class ids or [N, C] multi-hot."""
    labels = torch.as_tensor(labels)
    multi_hot = labels.float() if labels.dim() == 2 else F.one_hot(labels.long(), num_classes).float()
    words = torch.zeros(len(word_lists), vocab_size)
    for i, ids in enumerate(word_lists):
        if len(ids):
            words[i, torch.as_tensor(ids, dtype=torch.long)] = 1.0
    tf = (multi_hot.t() @ words) / multi_hot.sum(0).clamp_min(1).unsqueeze(1)
    idf = torch.log(num_classes / (tf > 0).sum(0).clamp_min(1).float())
    profile = tf * idf
    return profile / profile.sum(1, keepdim=True).clamp_min(1e-12)


def _class_table(name: str, table: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
    """A per-class table given to the model (fp32, checked against `shape`), or zeros when None: a saved
    model is built that way and load_state_dict then fills the table."""
    if table is None:
        return torch.zeros(shape)
    if tuple(table.shape) != shape:
        raise ValueError(f"{name} must have shape [{shape[0]}, {shape[1]}], got {tuple(table.shape)}")
    return table.float()


class CMLTNet(nn.Module):
    def __init__(self, config: CMLTNetConfig, *, word_vectors: torch.Tensor | None = None,
                 class_words: torch.Tensor | None = None, class_anchors: torch.Tensor | None = None):
        """word_vectors: optional initial word table [|V|, e]; class_words: [C, |V|] class word
        profiles (class_word_profile), used by semantic_head; class_anchors: [C, anchor_dim] class-text
        embeddings (pycmlt.training.class_anchors), used by text_anchors. Both default to zeros that
        load_state_dict fills when a saved model is loaded."""
        super().__init__()
        self.config = config
        self.visual = build_backbone(config.backbone, weights=config.backbone_weights)
        fv = self.visual.out_features
        self.words = None
        if config.use_align or config.use_infer:
            self.words = WordEncoder(config.vocab_size, config.word_dim, config.text_hidden,
                                     pooling=config.text_pooling, init_vectors=word_vectors)
        if config.use_align:
            self.project_visual = nn.Linear(fv, config.shared_dim)
            self.project_text = nn.Linear(config.text_hidden, config.shared_dim)
        if config.use_infer:
            self.phi = nn.Sequential(nn.Linear(fv, fv), nn.ReLU(inplace=True), nn.Linear(fv, config.word_dim))
        self.fusion = Fusion(fv, config.word_dim, config.fusion) if config.use_fuse else None
        in_features = self.fusion.out_features if self.fusion is not None else fv
        self.classifier = build_classifier(config.classifier, in_features, config.num_classes, config.cosine_scale,
                                           config.learn_cosine_scale)
        if config.semantic_head:
            self.register_buffer("class_words", _class_table("class_words", class_words,
                                                             (config.num_classes, config.vocab_size)))
            self.semantic_log_scale = nn.Parameter(torch.tensor(math.log(config.semantic_scale)))
        self.anchor_head = None
        if config.text_anchors:
            anchors = _class_table("class_anchors", class_anchors, (config.num_classes, config.anchor_dim))
            self.anchor_head = TextAnchorHead(fv, anchors, config.semantic_scale)

    @property
    def word_table(self) -> torch.Tensor:
        """The word-embedding table E [|V|, e] that the semantic space lives in."""
        if self.words is None:
            raise RuntimeError("this model has no word space (use_align and use_infer are off)")
        return self.words.table

    def semantic(self, images: torch.Tensor) -> torch.Tensor:
        """s = phi(f_v(x)): the image mapped into the word space (needs use_infer)."""
        if not self.config.use_infer:
            raise RuntimeError("this model has no cross-modal inference module (use_infer=False)")
        return self.phi(self.visual(images))

    def class_prototypes(self) -> torch.Tensor:
        """[C, e] each class's point in the word space: its word profile applied to the word table."""
        return self.class_words @ self.word_table

    def head_logits(self, h_v: torch.Tensor, s: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each head's logits [B, C] ("classifier", and "semantic" / "text_anchors" when the model has
        them; the model's logits are their sum, in this order) and the classifier input f."""
        features = self.fusion(h_v, s) if self.fusion is not None else h_v
        heads = {"classifier": self.classifier(features)}
        if self.config.semantic_head:
            # Classes are also recognised through their descriptions: a tail class seen in few images
            # still has a word profile, and phi (trained on every class's images) maps into that space.
            semantic = F.normalize(s, dim=1) @ F.normalize(self.class_prototypes(), dim=1).t()
            heads["semantic"] = self.semantic_log_scale.exp() * semantic
        if self.anchor_head is not None:
            heads["text_anchors"] = self.anchor_head(h_v)
        return heads, features

    def classify(self, h_v: torch.Tensor, s: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        heads, features = self.head_logits(h_v, s)
        logits = heads["classifier"]
        for name in ("semantic", "text_anchors"):
            if name in heads:
                logits = logits + heads[name]
        return logits, features

    def forward(self, images: torch.Tensor, word_ids: torch.Tensor | None = None,
                word_mask: torch.Tensor | None = None) -> CMLTNetOutput:
        h_v = self.visual(images)
        s = self.phi(h_v) if self.config.use_infer else None
        logits, features = self.classify(h_v, s)
        out = CMLTNetOutput(logits=logits, features=features, h_v=h_v, s=s)
        if word_ids is not None and self.words is not None:
            if word_mask is None:
                word_mask = word_ids >= 0
            out.pooled_words, h_t = self.words(word_ids, word_mask)
            out.has_words = word_mask.any(dim=1)
            if self.config.use_align:
                out.z_v = self.project_visual(h_v)
                out.z_t = self.project_text(h_t)
        return out

    def word_index(self, vocab=None):
        """A FAISS index (pycmlt.index.WordIndex, cosine) over the current word-embedding table E,
        rebuilt only when E has changed since the last call."""
        from pycmlt.index import WordIndex

        vocab = list(vocab if vocab is not None else self._require_vocab())
        table = self.word_table
        key = (table.data_ptr(), table._version, tuple(vocab))
        if getattr(self, "_index_key", None) != key:
            if len(vocab) != table.shape[0]:
                raise ValueError(f"vocab has {len(vocab)} words but the word table has {table.shape[0]} rows")
            self._index = WordIndex(vocab, table.detach().float().cpu())
            self._index_key = key
        return self._index

    @torch.no_grad()
    def infer_words(self, images: torch.Tensor, k: int = 5, vocab=None) -> list[list[tuple[str, float]]]:
        """The k words nearest to each image in the learned word space, with their cosine scores.
        Needs only the images (words are privileged information); vocab defaults to `self.vocab`."""
        was_training = self.training
        self.eval()
        try:
            s = self.semantic(images)
        finally:
            self.train(was_training)
        index = self.word_index(vocab)
        scores, ids = index.search(s.float().cpu(), k)
        return [[(index.words[i], float(v)) for i, v in zip(row_ids.tolist(), row_scores.tolist()) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]

    def _require_vocab(self):
        vocab = getattr(self, "vocab", None)
        if vocab is None:
            raise ValueError("pass vocab=[...] (the training vocabulary) or load the model with "
                             "pycmlt.load_model, which attaches it")
        return vocab

    def to_dict(self) -> dict:
        return asdict(self.config)
