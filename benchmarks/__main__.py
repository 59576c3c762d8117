"""python -m benchmarks <suite>|all [--device cpu|cuda] [--quick] [--out DIR] [--time-budget S]
python -m benchmarks report [--results DIR] [--quick] [--readme README.md | --no-readme]

Suites: ce, bce, fused-linear, contrastive, alignment (loss kernels against eager PyTorch,
torch.compile and peers), index (nearest-word search), train-step (end-to-end CMLTNet step),
grid (CE and BCE, plain and long-tail options, fp32/bf16, over an (N, C) grid: speed-up heat maps).
Each writes <out>/<suite>[-quick]-<device>.json and .md; `report` turns the latest results into
benchmarks/results/REPORT.md, PNG plots and the README's benchmark tables."""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

# sub-command -> module in benchmarks/ with run(device, quick=False) -> dict
SUITES = {"ce": "ce", "bce": "bce", "fused-linear": "fused_linear", "contrastive": "contrastive",
          "alignment": "alignment", "index": "index", "train-step": "train_step", "grid": "grid"}
ORDER = ["ce", "bce", "fused-linear", "contrastive", "alignment", "index", "train-step", "grid"]


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="suite", required=True, metavar="{" + ",".join(ORDER + ["all", "report"]) + "}")
    for name in ORDER + ["all"]:
        p = sub.add_parser(name, help="every suite in turn" if name == "all" else f"the {name} suite")
        p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                       help="default: cuda when a GPU is visible, else cpu")
        p.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (smoke test); "
                       "writes <suite>-quick-<device>.json, which the report skips")
        p.add_argument("--out", default=None, help="output folder (default benchmarks/results/)")
        p.add_argument("--time-budget", type=float, default=None, metavar="S",
                       help="stop measuring after S seconds per suite; what is left is reported as skipped")
        p.add_argument("--quiet", action="store_true", help="do not print the markdown tables")
    p = sub.add_parser("report", help="REPORT.md, plots and the README tables from the latest results")
    p.add_argument("--results", default=None, help="results folder (default benchmarks/results/; its gpu/ "
                   "sub-folder is read too)")
    p.add_argument("--out", default=None, help="where REPORT.md and plots/ go (default: the results folder)")
    p.add_argument("--quick", action="store_true", help="report the -quick results instead (smoke test)")
    p.add_argument("--readme", default=None, help="README to update between the benchmark markers "
                   "(default: the checkout's README.md)")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    return parser


def run_suite(name: str, device, args) -> None:
    from benchmarks import harness

    module = importlib.import_module(f"benchmarks.{SUITES[name]}")
    harness.set_time_budget(args.time_budget)
    start = time.perf_counter()
    result = module.run(device, quick=args.quick)
    cases, render = result.pop("cases"), result.pop("render", None)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    json_path, md_path = harness.write_results(name, device, cases, out_dir=args.out, extra=result,
                                               quick=args.quick, render=render)
    if not args.quiet:
        print(md_path.read_text())
    print(f"wrote {json_path} and {md_path} ({result['wall_s']} s)", flush=True)


def main(argv=None, prog: str = "python -m benchmarks") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.suite == "report":
        from benchmarks import report

        return report.main(args)
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU is visible here", file=sys.stderr)
        return 2
    failed = []
    for name in (ORDER if args.suite == "all" else [args.suite]):
        try:
            run_suite(name, device, args)
        except Exception:  # one broken suite must not lose the others' results
            traceback.print_exc()
            print(f"suite {name} failed", file=sys.stderr, flush=True)
            failed.append(name)
    if failed:
        print(f"failed suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
