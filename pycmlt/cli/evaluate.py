"""`pycmlt eval RUN`: re-evaluate a trained run (or another split/dataset) from its model.pt."""
from __future__ import annotations

import json


def add_parser(sub, name):
    p = sub.add_parser(name, help="evaluate a trained run folder on its test split")
    p.add_argument("run_dir", help="run folder (holds model.pt and config.json)")
    p.add_argument("--data-root", default=None, help="override the dataset location")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import torch

    from pycmlt.training.checkpoint import load_run
    from pycmlt.training.loop import load_datasets, resolve_device
    from pycmlt.training.metrics_report import format_metrics_table
    from pycmlt.training.model_evaluation import evaluate_model

    model, meta, config = load_run(args.run_dir, resolve_device(args.device), data_root=args.data_root)
    _, test_set = load_datasets(config)
    counts = torch.as_tensor(meta["class_counts"], dtype=torch.float32)
    metrics = evaluate_model(model, config, test_set, counts, meta["vocab"], meta["multi_label"],
                             next(model.parameters()).device)
    print(json.dumps(metrics, indent=2) if args.json else format_metrics_table({config.method: metrics}))
    return 0
