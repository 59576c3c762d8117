"""python -m benchmarks <op family> [--device cpu|cuda] [--quick] [--out DIR]"""
from __future__ import annotations

import argparse
import sys

import torch

from benchmarks import alignment, bce, ce, contrastive, fused_linear, index
from benchmarks.harness import write_results

SUITES = {"ce": ce.run, "bce": bce.run, "fused-linear": fused_linear.run, "contrastive": contrastive.run,
          "alignment": alignment.run, "index": index.run}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suite", choices=sorted(SUITES) + ["all"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (smoke test)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results/)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU is visible here", file=sys.stderr)
        return 2
    for name in (sorted(SUITES) if args.suite == "all" else [args.suite]):
        result = SUITES[name](device, quick=args.quick)
        suffix = "-quick" if args.quick else ""
        cases, render = result.pop("cases"), result.pop("render", None)
        json_path, md_path = write_results(name + suffix, device, cases, out_dir=args.out, extra=result,
                                           render=render)
        print(md_path.read_text())
        print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
