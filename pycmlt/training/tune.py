"""Hyper-parameter search on the val split (`pycmlt tune`): every point of a grid (the Cartesian
product of the given values) is a run folder trained with select_on="val" and evaluate_test=False,
so the test split is never built. tune.json records every point's overrides and val metrics (top-1,
few, the selected epoch); best_config.json is the full TrainConfig of the best point: the highest
val top-1 (criterion "top1") or val few-shot accuracy ("few"), the first point in grid order on a
tie. Finished points are reused and killed ones resumed."""
from __future__ import annotations

import itertools
import json
import re
import shlex
import sys
import typing
from pathlib import Path

from pycmlt.atomic_write import atomic_write_json
from pycmlt.training.checkpoint import CHECKPOINT
from pycmlt.training.config import TrainConfig
from pycmlt.training.loop import VAL_METRICS, train

CRITERIA = ("top1", "few")
NOT_TUNABLE = ("out_dir", "select_on", "eval_every")


def parse_grid(items: list[str]) -> dict[str, list]:
    """['lr=0.1,0.05', 'use-align=true,false'] -> {'lr': [0.1, 0.05], 'use_align': [True, False]}."""
    fields = typing.get_type_hints(TrainConfig)
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid expects key=v1,v2,..., got {item!r}")
        if name not in fields or name in NOT_TUNABLE:
            raise ValueError(f"--grid {key}: not a tunable TrainConfig key (not tunable: {', '.join(NOT_TUNABLE)})")
        if name in grid:
            raise ValueError(f"--grid {key} is given twice")
        parsed = [_parse_value(name, fields[name], v.strip()) for v in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"--grid {key}: repeated value in {values!r}")
        grid[name] = parsed
    if not grid:
        raise ValueError("give at least one --grid key=v1,v2,...")
    return grid


def _parse_value(name: str, hint, text: str):
    types = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    kind = typing.get_origin(types[0]) or types[0]
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind in (int, float, str):
            return kind(text)
        return json.loads(text)
    except ValueError:
        raise ValueError(f"--grid {name}: {text!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def point_name(overrides: dict) -> str:
    """A folder name naming the overrides, e.g. 'lr=0.1_use_align=False'."""
    text = "_".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in overrides.items())
    return re.sub(r"[^A-Za-z0-9.=_+-]", "-", text)


def tune(base: TrainConfig, grid: dict[str, list], out_dir: str | Path, criterion: str = "top1") -> dict:
    """Trains every grid point on val only; writes tune.json and best_config.json into out_dir."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    out_dir = Path(out_dir)
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    # every point's config is built (and so checked) before anything trains
    configs = [base.replace(select_on="val", out_dir=str(out_dir / point_name(p)), **p) for p in points]
    records = []
    for overrides, config in zip(points, configs):
        run_dir = Path(config.out_dir)
        if (run_dir / VAL_METRICS).exists():
            result = json.loads((run_dir / VAL_METRICS).read_text())
        else:
            result = train(config, resume=(run_dir / CHECKPOINT).exists(), evaluate_test=False).metrics
        records.append({"overrides": overrides, "run": run_dir.name, "selected_epoch": result["selected_epoch"],
                        "val": {k: result["val"].get(k) for k in ("top1", "few", "many", "medium", "mAP")
                                if k in result["val"]}})
    scores = [r["val"].get(criterion) for r in records]
    if all(s is None for s in scores):
        raise ValueError(f"no grid point has a val {criterion} (few: the val split has no few-shot class); "
                         "use --criterion top1")
    best = max(range(len(records)), key=lambda k: (scores[k] is not None, scores[k] or 0.0, -k))
    command = " ".join(shlex.quote(a) for a in ["pycmlt", *sys.argv[1:]]) if sys.argv else ""
    summary = {"method": base.method, "dataset": base.dataset, "criterion": criterion, "grid": grid,
               "command": command, "points": records, "best": {"index": best, **records[best]}}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "tune.json", summary)
    atomic_write_json(out_dir / "best_config.json", configs[best].to_dict())
    return summary
