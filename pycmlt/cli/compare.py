"""`pycmlt compare`: several methods with the same seeds, one table."""
from __future__ import annotations

from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="train several methods with the same seeds and print one table "
                                  "(mean ± std); cmltnet variants: cmltnet:no-align, cmltnet:no-infer, cmltnet:no-fuse "
                                  "cmltnet:no-semantic (ablations), cmltnet:minilm (MiniLM-initialised word table), "
                                  "cmltnet:ldam-drw (LDAM-DRW classification loss)")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    add_config_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training.compare import compare

    base = config_from_args(args)
    compare(base, args.methods, args.seeds, base.out_dir)
    print(f"wrote {base.out_dir}/compare.json, compare.md and per_class_accuracy.png")
    return 0
