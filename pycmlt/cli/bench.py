"""`pycmlt bench <suite>|all|report ...`: the benchmark suite of a source checkout (the same as
`python -m benchmarks ...`). The benchmarks/ folder is not part of the installed package, so this
finds the checkout pycmlt was installed from (pip install -e .) or the current directory."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUITES = "ce, bce, fused-linear, contrastive, alignment, index, train-step, all, report"


def add_parser(sub, name):
    p = sub.add_parser(name, help="benchmarks: loss kernels vs eager/torch.compile/peers, index, training step, report",
                       description=f"Runs the benchmarks of a pycmlt source checkout. Sub-commands: {SUITES}. "
                                   "`pycmlt bench <sub-command> --help` lists its options "
                                   "(--device cpu|cuda, --quick, --out DIR, --time-budget S; report: --results, "
                                   "--quick, --readme, --no-readme).")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="SUITE [OPTIONS]", help=f"one of: {SUITES}")
    p.set_defaults(run=run)
    return p


def find_checkout() -> Path | None:
    """The source checkout holding benchmarks/: where pycmlt was imported from, else the working directory."""
    import pycmlt

    candidates = [Path(pycmlt.__file__).resolve().parent.parent, Path.cwd(), *Path.cwd().parents]
    for root in candidates:
        if (root / "benchmarks" / "__main__.py").is_file() and (root / "benchmarks" / "harness.py").is_file():
            return root
    return None


def run(args) -> int:
    root = find_checkout()
    if root is None:
        print("pycmlt bench: the benchmark suite lives in the benchmarks/ folder of a pycmlt source checkout "
              "and is not part of the installed package. Clone the repository, install it with "
              "`pip install --no-build-isolation -e .` and run `pycmlt bench` (or `python -m benchmarks`) "
              "from there.", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.__main__ import main

    return main(args.args or ["--help"], prog="pycmlt bench")
