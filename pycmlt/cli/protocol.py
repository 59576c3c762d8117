"""`pycmlt protocol`: the fair comparison in one command — every method tuned on val with the same
budget, the strongest baseline (on val) as the reference, then every method over several data
splits and seeds with paired bootstrap intervals (pycmlt/training/protocol.py)."""
from __future__ import annotations

from pycmlt.cli.arg_types import add_run_grid_arguments
from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="tune every method on val with the same budget, pick the best baseline on val, "
                                  "then compare all over data splits x seeds with paired intervals")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD",
                   help="stage-one methods to compare, and second stages built on one of them (METHOD@STAGE_ONE, "
                        "e.g. crt@ldam-drw: no grid of its own, tuned through its stage one)")
    p.add_argument("--grids", required=True, metavar="JSON",
                   help='file {"method": {"key": [v1, v2]}, ...}: each method\'s grid; all grids must have the '
                        "same number of points (e.g. benchmarks/protocol/grids.json)")
    add_run_grid_arguments(p, seeds=[0, 1, 2], data_seeds=[0, 1, 2],
                           data_seeds_help="dataset split seeds (default 0 1 2); tuning uses --data-seed's split")
    p.add_argument("--criterion", choices=("few", "top1"), default="few",
                   help="val metric that picks each method's grid point (ties: the first point) and the "
                        "reference baseline (ties broken by the other metric); default few")
    add_config_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training.protocol import load_grids, run_protocol

    base = config_from_args(args)
    grids = load_grids(args.grids, args.methods)
    record = run_protocol(base, args.methods, grids, base.out_dir, seeds=args.seeds, data_seeds=args.data_seeds,
                          criterion=args.criterion, n_boot=args.bootstrap)
    print(f"reference (best baseline on val): {record['reference']}")
    print(f"wrote {base.out_dir}/protocol.json, tune/<method>/ and compare/compare.md")
    return 0
