"""Command-line options generated from TrainConfig's fields, so every config key is a flag
(`--batch-size 64`, `--no-augment`), plus `--config FILE` (YAML/JSON) that flags override. Each
flag's help text, range and choices come from the validation table pycmlt.training.config.RULES."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from pycmlt.training.config import RULES, TrainConfig

ALIASES = {"use_align": ["--no-align"], "use_infer": ["--no-infer"], "use_fuse": ["--no-fuse"],
           "out_dir": ["--out"]}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of TrainConfig keys (flags override it)")
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training configuration (see pycmlt.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rule = RULES.get(f.name)
        text = (rule.describe() + "; " if rule else "").replace("%", "%%")
        choices = rule.choices if rule else None
        if hint is bool:
            names = [flag] + [a for a in ALIASES.get(f.name, []) if not a.startswith("--no-")]
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{text}default {default}")
            for alias in ALIASES.get(f.name, []):
                if alias.startswith("--no-"):
                    group.add_argument(alias, dest=f.name, action="store_false", help=f"same as --no-{flag[2:]}")
            continue
        names = [flag] + ALIASES.get(f.name, [])
        if f.name == "data_options":
            group.add_argument(*names, dest=f.name, type=json.loads, default=None, metavar="JSON",
                               help=f"{text}default {{}}")
        elif f.name == "word_topk":
            group.add_argument(*names, dest=f.name, type=int, nargs="+", default=None, metavar="K",
                               help=f"{text}default {' '.join(map(str, default))}")
        else:
            group.add_argument(*names, dest=f.name, type=_scalar_type(hint), default=None, choices=choices,
                               help=f"{text}default {default}")


def _scalar_type(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return base if base in (int, float, str) else str


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    base = TrainConfig.from_file(args.config).to_dict() if getattr(args, "config", None) else {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    base.update(overrides)
    return TrainConfig.from_dict(base)
