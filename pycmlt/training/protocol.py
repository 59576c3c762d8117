"""The fair comparison in one call (`pycmlt protocol`): every method gets the same tuning budget on
val, then all are compared over several data splits and seeds against the strongest baseline.

1. Tune: each method trains its own grid (`tune.tune`, select_on="val", the test split is never
   built) on the data split `base.data_seed`, keeping the point with the best val `criterion` (a tie
   keeps the first point). Every grid must have the same number of points (the same budget); a
   method's grid may tune whichever keys matter to it.
   A second stage named METHOD@STAGE_ONE (crt@ldam-drw, crt@cmltnet) has no grid: it is tuned
   through its stage one, which must be among the methods. Its val score is that of its stage with
   the recipe's defaults (an empty grid, `tune/<crt-on-ldam-drw>/defaults/`) on the stage one's
   tuned-point run, so it gets its stage one's budget and nothing more.
2. Reference: the baseline (a method that does not use words, or a second stage built on one) with
   the best val score at its tuned point — val few-shot accuracy first, then val top-1 (criterion
   "few"), or the reverse ("top1"). Chosen on val, so the test split still decides nothing.
3. Compare: `compare.compare` trains every (method, data split, seed) run with its tuned overrides
   (each run selects its epoch on val, then reads test once) and pairs every method with the
   reference (bootstrap intervals over distinct test items). The run of the tuning split and
   `base.seed` is the tuned point's own tuning run, with the same config: its folder is copied and
   resumed (no epoch left to train; the selected epoch is then evaluated on test once), so it is not
   trained twice. The result is the same as training it again (tests/test_protocol.py). A second
   stage's compare run is trained again, on the compare copy of its stage one (the config names its
   stage one's folder; a second stage is short).

Writes <out>/tune/<method>/ (tune.json, best_config.json), <out>/compare/ (compare.json, .md, plot)
and <out>/protocol.json (grids, the tuned points, the reference and why). Finished runs are reused
and killed ones resumed, so a protocol can be extended with more seeds later."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from pycmlt.atomic_write import atomic_write_json
from pycmlt.errors import ConfigMismatchError
from pycmlt.training.checkpoint import CHECKPOINT, MODEL, load
from pycmlt.training.compare import compare, run_folder
from pycmlt.training.command_line import invoking_command
from pycmlt.training.config import TrainConfig
from pycmlt.training.recipes import RECIPES, explicit_cls_loss, saved_cls_loss
from pycmlt.training.resume_check import check_resume_config, stored_config
from pycmlt.training.tune import CRITERIA, check_distinct, grid_points, point_name, tunable_key, tune, tuned_point
from pycmlt.training.variants import parse_variant, stage_one_variant, uses_words, variant_folder


def grid_methods(methods: list[str]) -> list[str]:
    """The methods that need a grid: all but the second stages named METHOD@STAGE_ONE (tuned through
    their stage one)."""
    return [m for m in methods if "@" not in m]


def load_grids(path: str | Path, methods: list[str]) -> dict[str, dict[str, list]]:
    """{method: {key: [values]}} from a JSON file {method: {"key": [v1, v2], ...}}, checked: every
    method has a grid (METHOD@STAGE_ONE needs none: `grid_methods`), every grid has the same number of
    points, every key is tunable."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--grids {path}: cannot read a JSON object of grids ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--grids {path}: expected a JSON object {{method: {{key: [values]}}}}")
    second_stages = [m for m in methods if "@" in m and m in raw]
    if second_stages:
        raise ValueError(f"--grids {path}: {second_stages} are tuned through their stage one and take no grid of "
                         "their own (the same budget as the stage one)")
    methods = grid_methods(methods)
    missing = [m for m in methods if m not in raw]
    if missing:
        raise ValueError(f"--grids {path}: no grid for {missing}")
    grids = {}
    for method in methods:
        if not isinstance(raw[method], dict) or not raw[method]:
            raise ValueError(f"--grids {path}: {method}'s grid must be a non-empty object {{key: [values]}}")
        grids[method] = {}
        for key, values in raw[method].items():
            where = f"--grids {path}: {method} {key}"
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: expected a non-empty list of values, got {values!r}")
            check_distinct(values, where, json.dumps(values))
            grids[method][tunable_key(key, where)] = values  # types are checked when the configs are built
    sizes = {m: _points(g) for m, g in grids.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"--grids {path}: every method must get the same tuning budget, but the grids have "
                         f"{sizes} points")
    return grids


def reuse_tuning_runs(base: TrainConfig, tuned: dict[str, dict], out_dir: Path, seeds: list[int],
                      data_seeds: list[int]) -> list[str]:
    """Copies each method's tuned-point run (tuning split, base.seed) to the compare run it equals,
    when that compare run has not started and the configs agree on every key but out_dir; returns the
    methods whose run was copied. Files of the tuning run only (run.lock, val_metrics.json, model.pt)
    are left out, so compare resumes the copy and writes the test metrics itself."""
    if base.seed not in seeds or base.data_seed not in data_seeds:
        return []
    copied = []
    for method, point in tuned.items():
        if "@" in method:  # its config names the tuning copy of its stage one: never the compare run's
            continue
        source = out_dir / "tune" / method / point_name(point["overrides"])
        target = run_folder(out_dir / "compare", method, base.data_seed, base.seed, data_seeds, base.data_seed)
        stored = stored_config(source) if (source / CHECKPOINT).exists() else None
        if stored is None or target.exists() or not (source / MODEL).exists():
            continue
        multi_label = bool(load(source / MODEL).get("multi_label"))  # what the run's cls_loss default meant
        wanted = base.replace(method=method, seed=base.seed, data_seed=base.data_seed, out_dir=str(target),
                              **point["overrides"])
        try:
            check_resume_config(saved_cls_loss(stored, multi_label), explicit_cls_loss(wanted, multi_label))
        except ConfigMismatchError:
            continue
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("run.lock", "val_metrics.json", "model.pt"))
        copied.append(method)
    return copied


def check_protocol_methods(methods: list[str]) -> None:
    """At least two distinct methods: stage-one methods, or METHOD@STAGE_ONE whose stage one is one of
    them (not cmltnet variants: the protocol compares methods; ablations are `pycmlt compare`'s)."""
    for method in methods:
        name, changes = parse_variant(method)  # an unknown name is refused here
        if "@" in method:
            if stage_one_variant(method) not in methods:
                raise ValueError(f"{method!r} is tuned through its stage one {stage_one_variant(method)!r}, "
                                 f"which must also be one of the methods {methods}")
        elif changes or RECIPES[name].stage != 1:
            raise ValueError(f"the protocol tunes stage-one methods and METHOD@STAGE_ONE second stages "
                             f"(e.g. crt@ldam-drw), not variants or bare second stages: {method!r}")
    if len(set(methods)) != len(methods) or len(methods) < 2:
        raise ValueError(f"give at least two distinct methods, got {methods}")


def tune_second_stage(base: TrainConfig, method: str, tuned: dict[str, dict], out_dir: Path, criterion: str) -> dict:
    """The val score of METHOD@STAGE_ONE: its stage with the recipe's defaults (an empty grid) on its
    stage one's tuned-point run; returns its `tuned` entry (no overrides, the stage one named)."""
    stage_one = stage_one_variant(method)
    name, _ = parse_variant(method)
    stage1 = out_dir / "tune" / stage_one / point_name(tuned[stage_one]["overrides"])
    folder = out_dir / "tune" / variant_folder(method)
    summary = tune(base.replace(method=name, stage1=str(stage1)), {}, folder, criterion=criterion)
    return {**tuned_point(summary, folder / "tune.json"), "points": tuned[stage_one]["points"],
            "tuned_through": stage_one}


def _points(grid: dict[str, list]) -> int:
    return len(grid_points(grid))


def _score_order(criterion: str) -> tuple[str, str]:
    """The val metrics that rank tuned points, most important first."""
    return ("few", "top1") if criterion == "few" else ("top1", "few")


def choose_reference(tuned: dict[str, dict], criterion: str) -> str:
    """The baseline with the best val score at its tuned point (see the module docstring)."""
    order = _score_order(criterion)

    def score(method):
        val = tuned[method]["val"]
        return tuple(val.get(k) if val.get(k) is not None else float("-inf") for k in order)

    baselines = [m for m in tuned if not uses_words(m)]
    if not baselines:
        raise ValueError("the protocol needs at least one baseline (a method that does not use words)")
    return max(baselines, key=score)


def run_protocol(base: TrainConfig, methods: list[str], grids: dict[str, dict[str, list]], out_dir: str | Path,
                 seeds: list[int], data_seeds: list[int], criterion: str = "few", n_boot: int = 2000) -> dict:
    """Tunes every method on val, picks the reference on val, compares; returns protocol.json's content."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_protocol_methods(methods)
    out_dir = Path(out_dir)
    base = base.replace(select_on="val")  # every compared run also picks its epoch on val
    missing = [m for m in grid_methods(methods) if m not in grids]
    if missing:
        raise ValueError(f"no grid for {missing}")
    for method in grid_methods(methods):  # every grid point's config is built (so checked) before anything trains
        for point in grid_points(grids[method]):
            base.replace(method=method, **point)
    tuned = {}
    for method in grid_methods(methods):
        summary = tune(base.replace(method=method), grids[method], out_dir / "tune" / method, criterion=criterion)
        tuned[method] = tuned_point(summary, out_dir / "tune" / method / "tune.json")
    for method in methods:
        if "@" in method:
            tuned[method] = tune_second_stage(base, method, tuned, out_dir, criterion)
    reference = choose_reference(tuned, criterion)
    order = _score_order(criterion)
    reuse_tuning_runs(base, tuned, out_dir, seeds=seeds, data_seeds=data_seeds)
    summary = compare(base, methods, seeds, out_dir / "compare", data_seeds=data_seeds, reference=reference,
                      n_boot=n_boot, tuned=tuned)
    command = invoking_command()
    record = {"dataset": base.dataset, "methods": methods, "criterion": criterion, "grids": grids,
              "tuning_split": base.data_seed, "tuned": tuned, "reference": reference,
              "reference_rule": f"the baseline with the best val {' then '.join(order)} at its tuned point",
              "data_seeds": data_seeds, "seeds": seeds, "command": command,
              "mean": summary["mean"], "std": summary["std"], "paired": summary.get("paired")}
    atomic_write_json(out_dir / "protocol.json", record)
    return record
