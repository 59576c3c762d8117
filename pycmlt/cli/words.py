"""`pycmlt words --checkpoint RUN IMAGE...`: the words a trained CMLTNet infers from images."""
from __future__ import annotations

from pycmlt.cli.arg_types import non_negative_int, positive_int


def add_parser(sub, name):
    p = sub.add_parser(name, help="print the top-k words a trained CMLTNet infers from each image")
    p.add_argument("--checkpoint", required=True, help="folder (or model.pt) of a finished cmltnet run")
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("-k", type=positive_int, default=5, help="words per image (default 5)")
    p.add_argument("--test-examples", type=non_negative_int, default=0, metavar="N",
                   help="also show N examples of the run's test split next to their true words")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.training.checkpoint import load_run
    from pycmlt.training.loop import load_datasets
    from pycmlt.training.words import format_inferred, images_from_files, test_examples

    if not args.images and not args.test_examples:
        raise ValueError("give image files and/or --test-examples N")
    model, meta, config = load_run(args.checkpoint, args.device)
    if not model.config.use_infer:
        raise ValueError(f"{args.checkpoint}: this model has no cross-modal inference module (trained without "
                         "CMI); word inference needs a cmltnet run without --no-infer")
    if args.images:
        images = images_from_files(args.images, meta["image"]).to(args.device)
        print(format_inferred(model.infer_words(images, args.k), args.images))
    if args.test_examples:
        _, test_set = load_datasets(config)
        step = max(1, len(test_set) // args.test_examples)
        print(test_examples(model, test_set, list(range(0, len(test_set), step))[: args.test_examples], args.k))
    return 0
