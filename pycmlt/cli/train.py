"""`pycmlt train`: train and evaluate one method (also under torchrun for DDP)."""
from __future__ import annotations

from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="train and evaluate one method; writes checkpoints, metrics.json, "
                                  "metrics.md and per_class_accuracy.png into --out")
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training import train

    result = train(config_from_args(args), resume=args.resume)
    if result.metrics:
        print(f"results in {result.out_dir}/ (metrics.json, metrics.md, model.pt)")
    return 0
