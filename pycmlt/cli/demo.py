"""`pycmlt demo` (what `make demo` runs): build emoji-lt, train `ce` and `cmltnet` with the same
seed, print the comparison table (overall / many / medium / few), save the per-class plot, and show
the words CMLTNet infers for a handful of test images next to their true keywords. Finished runs
in the output folder are reused, killed ones resumed."""
from __future__ import annotations

import time

from pycmlt.cli.arg_types import non_negative_int, positive_int


def add_parser(sub, name):
    p = sub.add_parser(name, help="the main job on the built-in data: ce vs cmltnet on emoji-lt")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs per method (default 10: about 12 minutes on 2 cores)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--examples", type=non_negative_int, default=8, help="test images whose inferred words are shown")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.data import build_dataset, format_summary
    from pycmlt.training import TrainConfig
    from pycmlt.training.checkpoint import load_model, saved_train_config
    from pycmlt.training.compare import compare
    from pycmlt.training.loop import load_datasets
    from pycmlt.training.words import test_examples

    start = time.perf_counter()
    print("== emoji-lt: building (or finding) the dataset cache")
    train_set = build_dataset("emoji-lt", "train", verbose=True)
    print(format_summary(train_set.summary(), train_set.classes, show_classes=0))

    base = TrainConfig(dataset="emoji-lt", epochs=args.epochs, seed=args.seed, device=args.device,
                       out_dir=args.out, progress=True)
    print(f"\n== training ce and cmltnet, {args.epochs} epochs each, seed {args.seed} (runs in {args.out}/)")
    compare(base, ["ce", "cmltnet"], [args.seed], args.out)
    print(f"\nper-class accuracy plot: {args.out}/per_class_accuracy.png")

    print("\n== words CMLTNet infers from test images (privileged information it never sees at test time)")
    model, meta = load_model(f"{args.out}/cmltnet/seed{args.seed}")
    _, test_set = load_datasets(saved_train_config(meta))
    step = max(1, len(test_set) // max(1, args.examples))
    print(test_examples(model, test_set, list(range(step // 2, len(test_set), step))[: args.examples], k=5))
    print(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
