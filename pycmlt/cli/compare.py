"""`pycmlt compare`: several methods with the same data splits and seeds, one table; optionally a
paired comparison of every method with a reference method."""
from __future__ import annotations


from pycmlt.cli.arg_types import add_run_grid_arguments
from pycmlt.cli.config_args import add_config_arguments, config_from_args


def add_parser(sub, name):
    p = sub.add_parser(name, help="train several methods with the same seeds and print one table "
                                  "(mean ± std); cmltnet variants: cmltnet:no-align, cmltnet:no-infer, cmltnet:no-fuse "
                                  "(ablations), cmltnet:semantic (the semantic head on; off by default), "
                                  "cmltnet:minilm (MiniLM-initialised word table), "
                                  "cmltnet:text-anchors (text-anchor head), cmltnet:balanced-softmax (balanced "
                                  "softmax instead of the default LDAM-DRW classification loss; cmltnet:ldam-drw "
                                  "names the default); "
                                  "METHOD@STAGE_ONE builds a second stage on another stage-one variant than ce "
                                  "(crt@cmltnet: cRT on CMLTNet's fused features)")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD")
    add_run_grid_arguments(p, seeds=[0], data_seeds=None, data_seeds_help="dataset split seeds: every (method, "
                           "data seed, seed) is one run (default: --data-seed)")
    p.add_argument("--reference", default=None, metavar="METHOD",
                   help="one of --methods: add a paired comparison of every other method with it (Δ top-1 and "
                        "Δ few with 95%% bootstrap intervals over distinct test items)")
    p.add_argument("--tuned", nargs="+", default=[], metavar="METHOD=PATH",
                   help="give a method its hyper-parameters chosen on val: PATH is the `pycmlt tune` output (its "
                        "tune.json or folder); the best point's overrides apply on top of the other options")
    add_config_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training.compare import compare, load_tuned

    base = config_from_args(args)
    tuned = load_tuned(args.tuned, base.dataset)
    compare(base, args.methods, args.seeds, base.out_dir, data_seeds=args.data_seeds, reference=args.reference,
            n_boot=args.bootstrap, tuned=tuned)
    print(f"wrote {base.out_dir}/compare.json, compare.md and per_class_accuracy.png")
    return 0
