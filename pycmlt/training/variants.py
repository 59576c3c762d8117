"""Names of what `pycmlt compare` trains: a method, a variant of cmltnet, or a second stage built on
a named stage-one variant.

  ce, ldam-drw, cmltnet, ...      a method with its defaults
  cmltnet:no-align, ...           cmltnet with one change (ABLATIONS: ablations and options)
  crt@cmltnet, crt@ldam-drw, ...  a method that builds on a stage-one model (crt, tau-norm,
                                  logit-adjust) built on the variant after `@` instead of its
                                  recipe's default stage one (ce): cRT on CMLTNet's fused features,
                                  or on LDAM-DRW's, with the same data split and seed.

This module is pure string handling over the recipe table (no torch)."""
from __future__ import annotations

from pycmlt.training.recipes import METHODS, RECIPES

ABLATIONS = {"no-align": {"use_align": False}, "no-infer": {"use_infer": False, "use_fuse": False},
             "no-fuse": {"use_fuse": False}, "no-semantic": {"semantic_head": False},
             "semantic": {"semantic_head": True},
             "minilm": {"word_vectors": "minilm"}, "ldam-drw": {"cls_loss": "ldam-drw"},
             "balanced-softmax": {"cls_loss": "balanced-softmax"},
             "text-anchors": {"text_anchors": True},
             "anchor-contrast": {"text_anchors": True, "lambda_anchor": 0.1}}


def parse_variant(name: str) -> tuple[str, dict]:
    """'cmltnet:no-align' -> ('cmltnet', {'use_align': False}); plain method names map to themselves;
    'crt@cmltnet' -> ('crt', {}) (its stage one: stage_one_variant). Variants of cmltnet: no-align,
    no-infer, no-fuse (ablations), semantic (the semantic head on, the default until 2026-12-02), no-semantic
    (the default, spelled out), minilm (word table initialised from MiniLM vectors),
    ldam-drw (LDAM-DRW classification loss, cosine classifier: the default, spelled out), balanced-softmax
    (balanced softmax instead, the default until LDAM-DRW won on val), text-anchors (the text-anchor head:
    frozen MiniLM class-text anchors scored against h_v), anchor-contrast (the text-anchor head plus the
    image-anchor contrastive term, lambda_anchor 0.1)."""
    head, at, built_on = name.partition("@")
    method, _, ablation = head.partition(":")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} in {name!r}; methods: {METHODS}")
    if ablation and (not RECIPES[method].uses_words or ablation not in ABLATIONS):
        raise ValueError(f"unknown variant {name!r}: variants are cmltnet:{'|'.join(ABLATIONS)}")
    if at:
        if RECIPES[method].stage_one is None or ablation:
            builds_on = [m for m in METHODS if RECIPES[m].stage_one is not None]
            raise ValueError(f"{name!r}: only {builds_on} build on a stage-one model (METHOD@STAGE_ONE)")
        base, _ = parse_variant(built_on)
        if "@" in built_on or RECIPES[base].stage != 1 or RECIPES[base].stage_one is not None:
            raise ValueError(f"{name!r}: {built_on!r} is not a stage-one method or cmltnet variant")
    return method, dict(ABLATIONS.get(ablation, {}))


def stage_one_variant(name: str) -> str | None:
    """The variant whose model `name` builds on: 'crt@cmltnet' -> 'cmltnet', 'crt' -> 'ce' (its recipe's
    default), None for a variant that trains from scratch."""
    method, _ = parse_variant(name)
    _, at, built_on = name.partition("@")
    return built_on if at else RECIPES[method].stage_one


def uses_words(name: str) -> bool:
    """Whether the variant's model learned from words: a cmltnet variant, or a second stage built on
    one ('crt@cmltnet'); not a baseline, nor a second stage on a baseline ('crt@ldam-drw')."""
    method, _ = parse_variant(name)
    _, at, built_on = name.partition("@")
    return uses_words(built_on) if at else RECIPES[method].uses_words


def variant_folder(name: str) -> str:
    """The folder name of a variant's runs: 'cmltnet:no-align' -> 'cmltnet-no-align', 'crt@cmltnet' ->
    'crt-on-cmltnet'."""
    return name.replace(":", "-").replace("@", "-on-")
