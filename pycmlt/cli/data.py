"""`pycmlt data`: build dataset caches and print dataset statistics.

    pycmlt data build emoji-lt [--size 32] [--seed 0] [--rebuild]
    pycmlt data build hanzi-lt [--option heldout_font=ukai]
    pycmlt data info emoji-lt [--split test]
    pycmlt data info nus-wide --root /data/NUS-WIDE --option mode=single-label --option imbalance_ratio=100
    pycmlt data info manifest --root my_data.csv --json
"""
from __future__ import annotations

import json

CACHED = ("emoji-lt", "hanzi-lt")  # built-in datasets rendered into the cache (take rebuild, cache_root)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(args) -> dict:
    opts = {}
    if args.size is not None:
        opts["image_size"] = args.size
    if args.seed is not None:
        opts["seed"] = args.seed
    if args.root is not None:
        opts["root"] = args.root
    for item in args.option or []:
        if "=" not in item:
            raise ValueError(f"--option expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        opts[k.strip().replace("-", "_")] = _parse_value(v)
    return opts


def _common(p):
    p.add_argument("dataset", help="emoji-lt, hanzi-lt, synthetic, nus-wide, vireo-food-172 or manifest")
    p.add_argument("--root", help="dataset folder (manifest: the .csv/.jsonl file or a folder of split files)")
    p.add_argument("--size", type=int, default=None, help="image resolution (emoji-lt/hanzi-lt/synthetic default 32)")
    p.add_argument("--seed", type=int, default=None, help="seed of renderings/splits (default 0)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="any other loader option, e.g. --option mode=single-label (values parsed as JSON)")


def add_parser(sub, name):
    p = sub.add_parser(name, help="build dataset caches, print dataset statistics")
    dsub = p.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser("build", help="build (or find) a dataset's cache and report its class counts")
    _common(b)
    b.add_argument("--rebuild", action="store_true", help="build again even if the cache exists (emoji-lt, hanzi-lt)")
    b.add_argument("--cache-dir", help="cache root (default $PYCMLT_CACHE_DIR, $XDG_CACHE_HOME/pycmlt or ~/.cache/pycmlt)")
    b.set_defaults(run=run_build)
    i = dsub.add_parser("info", help="class counts, imbalance ratio and shot groups of a split")
    _common(i)
    i.add_argument("--split", default="train")
    i.add_argument("--classes", type=int, default=10, help="show this many head and tail classes (0: none)")
    i.add_argument("--json", action="store_true", help="print the statistics as JSON")
    i.set_defaults(run=run_info)
    return p


def run_build(args) -> int:
    from pycmlt.data import build_dataset, format_summary
    from pycmlt.data.registry import canonical_name

    opts = _options(args)
    name = canonical_name(args.dataset)
    if name in CACHED:
        opts.update(rebuild=args.rebuild, verbose=True)
        if args.cache_dir:
            opts["cache_root"] = args.cache_dir
    ds = build_dataset(name, "train", **opts)
    if name in CACHED:
        print(f"cache: {ds.meta['cache_path']}")
    print(format_summary(ds.summary(), ds.classes, show_classes=0))
    return 0


def run_info(args) -> int:
    from pycmlt.data import build_dataset, format_summary

    ds = build_dataset(args.dataset, args.split, **_options(args))
    summary = ds.summary()
    if args.json:
        summary["classes"] = ds.classes
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary, ds.classes, show_classes=args.classes))
    return 0
