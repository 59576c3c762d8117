"""`pycmlt analyze RUN [RUN ...]`: the CMLTNet paper's case studies (feature distribution, Grad-CAM
attention, inferred words) for trained run folders that share a dataset, side by side."""
from __future__ import annotations



def add_parser(sub, name):
    p = sub.add_parser(name, help="feature distribution (t-SNE, per-shot-group intra-class similarity and "
                                  "nearest-class margin) and Grad-CAM attention on few-shot test images of trained "
                                  "runs, side by side; writes analysis.json and two PNGs into --out-dir")
    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run folders (pycmlt train --out-dir) of one dataset")
    p.add_argument("--out-dir", default="runs/analysis", help="where analysis.json and the PNGs go "
                                                             "(default runs/analysis)")
    p.add_argument("--num-images", type=int, default=8, help="few-shot test images in the Grad-CAM grid (default 8)")
    p.add_argument("--max-points", type=int, default=1000,
                   help="test images in each t-SNE, a seeded subset (default 1000); the statistics use all")
    p.add_argument("--num-words", type=int, default=3, help="inferred words shown per image for CMLTNet runs")
    p.add_argument("--features", choices=("classifier", "visual"), default="classifier",
                   help="the classifier's input (default) or the backbone's output h_v")
    p.add_argument("--data-root", default=None, help="override the dataset location")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the t-SNE, its subset and the images shown")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress messages")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pycmlt.evaluation.analyze import analyze_runs

    analyze_runs(args.run_dirs, args.out_dir, num_images=args.num_images, max_points=args.max_points,
                 num_words=args.num_words, features=args.features, device=args.device, seed=args.seed,
                 data_root=args.data_root, progress=args.progress)
    return 0
