"""`pycmlt demo`: what `make demo` runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def add_parser(sub, name):
    p = sub.add_parser(name, help="run the main job on the built-in default data")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from benchmarks import ce
    from benchmarks.harness import write_results

    import pycmlt

    # 1. The op is a drop-in for F.cross_entropy and adds the long-tail options.
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([2000.0, 500, 100, 20, 5])
    x = torch.randn(8, 5, generator=g)
    t = torch.tensor([0, 0, 1, 2, 3, 4, 0, 1])
    print("backends available on cpu:", pycmlt.ops.available_backends("cpu"))
    print(f"F.cross_entropy                : {F.cross_entropy(x, t).item():.6f}")
    print(f"class_balanced_cross_entropy   : {pycmlt.ops.class_balanced_cross_entropy(x, t).item():.6f}")
    for name, kw in [("class-balanced (beta=0.999)", dict(beta=0.999)),
                     ("CB focal (gamma=2)", dict(beta=0.999, focal_gamma=2.0)),
                     ("LDAM (m=0.5, s=30)", dict(ldam_max_margin=0.5, ldam_scale=30.0)),
                     ("balanced softmax", dict(logit_adjust_tau=1.0))]:
        loss = pycmlt.ops.class_balanced_cross_entropy(x, t, class_counts=counts, **kw)
        print(f"{name:31s}: {loss.item():.6f}")
    # 2. A quick benchmark of the fused kernels against eager PyTorch and torch.compile.
    result = ce.run(torch.device("cpu"), quick=True)
    _, md = write_results("ce-demo", torch.device("cpu"), result.pop("cases"), extra=result, out_dir="runs/demo")
    print(md.read_text())
    return 0
