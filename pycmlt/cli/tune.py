"""`pycmlt tune --method M --grid key=v1,v2 ...`: hyper-parameters chosen on the val split only."""
from __future__ import annotations


from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="train a grid of hyper-parameters with select_on=val and pick the best on val "
                                  "(the test split is never built); writes tune.json and best_config.json into --out")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a TrainConfig key and its values, e.g. --grid lr=0.1,0.05 --grid lambda-align=0.05,0.1 "
                        "(repeat for a Cartesian product)")
    p.add_argument("--criterion", choices=("top1", "few"), default="top1",
                   help="val metric that picks the best point (default top1; ties: the first point)")
    add_config_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training.tune import parse_grid, tune

    base = config_from_args(args)
    summary = tune(base, parse_grid(args.grid), base.out_dir, criterion=args.criterion)
    best = summary["best"]
    scores = ", ".join(f"{k} {100 * v:.1f}%" for k, v in best["val"].items() if v is not None)
    print(f"best on val {args.criterion}: {best['overrides']} (val {scores}; epoch {best['selected_epoch']})")
    print(f"wrote {base.out_dir}/tune.json and best_config.json")
    return 0
