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
import typing
from pathlib import Path

from pycmlt.atomic_write import atomic_write_json
from pycmlt.training.checkpoint import CHECKPOINT
from pycmlt.training.command_line import invoking_command
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
        if not sep or not key.strip() or not values.strip():
            raise ValueError(f"--grid expects key=v1,v2,..., got {item!r}")
        name = tunable_key(key, f"--grid {key}")
        if name in grid:
            raise ValueError(f"--grid {key} is given twice")
        parsed = [_parse_value(name, fields[name], v.strip()) for v in values.split(",")]
        check_distinct(parsed, f"--grid {key}", repr(values))
        grid[name] = parsed
    if not grid:
        raise ValueError("give at least one --grid key=v1,v2,...")
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every point of the grid (the Cartesian product of its axes), in grid order."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def tunable_key(key: str, where: str) -> str:
    """The TrainConfig field a grid key names ('use-align' -> 'use_align'); an error naming `where`
    when it is not a field or cannot be tuned."""
    name = key.strip().replace("-", "_")
    if name not in typing.get_type_hints(TrainConfig) or name in NOT_TUNABLE:
        raise ValueError(f"{where}: not a tunable TrainConfig key (not tunable: {', '.join(NOT_TUNABLE)})")
    return name


def check_distinct(values: list, where: str, shown: str) -> None:
    """A grid axis may not repeat a value (it would train the same point twice)."""
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{where}: repeated value in {shown}")


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
    """A folder name naming the overrides, e.g. 'lr=0.1_use_align=False'; 'defaults' for none (the
    one point of an empty grid)."""
    if not overrides:
        return "defaults"
    text = "_".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in overrides.items())
    return re.sub(r"[^A-Za-z0-9.=_+-]", "-", text)


def tune(base: TrainConfig, grid: dict[str, list], out_dir: str | Path, criterion: str = "top1") -> dict:
    """Trains every grid point on val only; writes tune.json and best_config.json into out_dir. An empty
    grid is one point, `base` itself (the protocol scores a second stage this way, on its tuned stage one)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    out_dir = Path(out_dir)
    points = grid_points(grid)
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
    command = invoking_command()
    summary = {"method": base.method, "dataset": base.dataset, "criterion": criterion, "grid": grid,
               "command": command, "points": records, "best": {"index": best, **records[best]}}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "tune.json", summary)
    atomic_write_json(out_dir / "best_config.json", configs[best].to_dict())
    return summary


def tuned_point(summary: dict, source: str | Path) -> dict:
    """The best point of a tune summary (tune.json's content) as `compare`'s tuned entry: its
    overrides, its val scores, where it came from, the criterion and the grid's size."""
    return {"overrides": dict(summary["best"]["overrides"]), "source": str(source), "val": summary["best"]["val"],
            "criterion": summary.get("criterion"), "points": len(summary.get("points", []))}
