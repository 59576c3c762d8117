"""`pycmlt train`: train and evaluate one method (also under torchrun for DDP)."""
from __future__ import annotations

from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="train and evaluate one method; writes checkpoints, metrics.json, "
                                  "metrics.md and per_class_accuracy.png into --out")
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(the options must match the run's config.json)")
    p.add_argument("--allow-config-change", metavar="KEY[,KEY]", action="append", default=None,
                   help="with --resume: config keys that may differ from the stored config.json, e.g. epochs,lr "
                        "(model and data keys such as method or backbone can never change)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training import train

    if args.allow_config_change and not args.resume:
        raise ValueError("--allow-config-change only applies with --resume")
    result = train(config_from_args(args), resume=args.resume, allow_config_change=args.allow_config_change)
    if result.metrics:
        print(f"results in {result.out_dir}/ (metrics.json, metrics.md, model.pt)")
    return 0
