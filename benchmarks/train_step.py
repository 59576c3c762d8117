"""End-to-end: time per training step of CMLTNet (pycmlt.models.CMLTNet + CMLTNetObjective, the
loop's SGD step) with each fast pycmlt backend against the torch backend (every loss op through its
PyTorch reference, `pycmlt.ops.use_backend("torch")`), and the share of the step spent in the losses.

The batch is synthetic but shaped like emoji-lt: 32 x 32 images, batch 128, 99 long-tailed classes,
a 2,200-word vocabulary and about 6 words per image (3 to 9, Zipf-distributed word frequencies). The
plain-CE baseline model (no word modules) is timed the same way, for reference.

Per configuration: forward (model + losses), backward, and the whole step (forward, backward,
optimizer step) as medians after warm-up; the peak extra memory of one step; and a torch.profiler
run of a few steps. Loss share = (time inside the objective's forward, whose ops run in the
"pycmlt.loss.*" ranges, + the time of the backward nodes those ops created, matched through the
autograd sequence numbers) / step time. CPU: CPU time; GPU: kernel time (and the CPU-side share).
"losses alone" times the objective's forward and backward on detached model outputs: a check on
the profiler's attribution that needs no profiler.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.harness import Measurement, median_ms, over_budget, budget_note, peak_memory_bytes, ratios_against
from pycmlt.data.longtail import longtail_targets
from pycmlt.models import CMLTNet
from pycmlt.ops import available_backends, use_backend
from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.training.config import TrainConfig
from pycmlt.training.model_setup import model_config
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.precision import MixedPrecision, compiled

EMOJI_LT = {"num_classes": 99, "vocab_size": 2200, "image_size": 32, "min_words": 3, "max_words": 9}
FULL = {"batch": 128, "backbone": "resnet32", "warmup": 3, "repeat": 10, "profile_steps": 3}
QUICK = {"batch": 16, "backbone": "resnet20", "warmup": 1, "repeat": 2, "profile_steps": 1}
LOSS_RANGE = "pycmlt.losses"
PART_PREFIX = "pycmlt.loss."


def synthetic_batch(batch: int, device: torch.device, seed: int = 0) -> dict:
    """Images, labels drawn from a long-tailed class prior, padded word ids (-1) and mask, and the
    training class / word counts the class-balanced losses are built from."""
    g = torch.Generator().manual_seed(seed)
    c, v = EMOJI_LT["num_classes"], EMOJI_LT["vocab_size"]
    class_counts = torch.tensor(longtail_targets(c, 400, 100.0), dtype=torch.float32)
    word_counts = (2000.0 / torch.arange(1, v + 1, dtype=torch.float32)).ceil()  # Zipf document frequencies
    labels = torch.multinomial(class_counts, batch, replacement=True, generator=g)
    k = torch.randint(EMOJI_LT["min_words"], EMOJI_LT["max_words"] + 1, (batch,), generator=g)
    word_ids = torch.full((batch, EMOJI_LT["max_words"]), -1, dtype=torch.long)
    for i in range(batch):
        word_ids[i, :k[i]] = torch.multinomial(word_counts, int(k[i]), replacement=False, generator=g)
    size = EMOJI_LT["image_size"]
    images = torch.randn(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    return {"images": images.to(device), "labels": labels.to(device), "word_ids": word_ids.to(device),
            "word_mask": (word_ids >= 0).to(device), "class_counts": class_counts, "word_counts": word_counts}


class Trainer:
    """One model + objective + optimizer, as pycmlt.training.stage_one builds them, and its step."""

    def __init__(self, method: str, backbone: str, batch: dict, device: torch.device, precision: str = "fp32",
                 compile: bool = False):
        config = TrainConfig(method=method, backbone=backbone, batch_size=batch["images"].shape[0])
        mcfg = model_config(config, EMOJI_LT["num_classes"], EMOJI_LT["vocab_size"])
        torch.manual_seed(0)
        self.model = CMLTNet(mcfg).to(device).to(memory_format=torch.channels_last).train()
        self.objective = CMLTNetObjective(config, self.model, batch["class_counts"],
                                          # per-word loss weights: their values do not change the cost
                                          class_balanced_weights(batch["word_counts"], config.word_loss_beta)
                                          if mcfg.use_infer else None,
                                          multi_label=False).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=True)
        self.batch = batch
        self.amp = MixedPrecision(precision, device)
        self.forward_model = compiled(self.model, compile)

    def losses(self, out):
        b = self.batch
        with record_function(LOSS_RANGE):
            loss, _ = self.objective(out, b["labels"], b["word_ids"], b["word_mask"], self.model)
        return loss

    def forward(self):
        b = self.batch
        with self.amp.autocast():
            return self.losses(self.forward_model(b["images"], b["word_ids"], b["word_mask"]))

    def step(self):
        loss = self.forward()
        self.optimizer.zero_grad(set_to_none=True)
        self.amp.backward(loss)
        self.amp.step(self.optimizer)

    def detached_outputs(self):
        """The model's outputs as leaves: the objective alone, its backward stopping at them."""
        b = self.batch
        with torch.no_grad():
            out = self.model(b["images"], b["word_ids"], b["word_mask"])
        leaf = lambda t: None if t is None else t.detach().requires_grad_(True)  # noqa: E731
        return dataclasses.replace(out, logits=leaf(out.logits), s=leaf(out.s), z_v=leaf(out.z_v), z_t=leaf(out.z_t))


def _ms(event_us: float) -> float:
    return event_us / 1e3


def loss_share_from_profile(prof, steps: int, device: torch.device) -> dict:
    """Attribute the profiled steps' time to the losses (forward ranges + their backward nodes)."""
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    ranges = [e for e in events if e.name == LOSS_RANGE]
    parts = [e for e in events if e.name.startswith(PART_PREFIX)]
    steps_ev = [e for e in events if e.name == "train_step"]

    def inside(r, e):
        return e.thread == r.thread and r.time_range.start <= e.time_range.start and e.time_range.end <= r.time_range.end

    def backward_of(rs):
        seqs = {(e.sequence_nr, e.thread) for r in rs for e in events if e.sequence_nr >= 0 and inside(r, e)}
        return [e for e in events if e.name.startswith("autograd::engine::evaluate_function")
                and (e.sequence_nr, e.fwd_thread) in seqs]

    use_device = device.type == "cuda"
    key = (lambda e: e.device_time_total) if use_device else (lambda e: e.cpu_time_total)
    if use_device:  # every kernel once: the device time of all top-level CPU events, any thread
        total = sum(e.device_time_total for e in events if e.cpu_parent is None)
    else:
        total = sum(e.cpu_time_total for e in steps_ev)
    fwd = sum(key(r) for r in ranges)
    bwd = sum(key(e) for e in backward_of(ranges))
    out = {"clock": "device (kernel) time" if use_device else "CPU time",
           "step_ms": _ms(total) / steps, "loss_fwd_ms": _ms(fwd) / steps, "loss_bwd_ms": _ms(bwd) / steps,
           "loss_share": (fwd + bwd) / total if total else None, "parts": {}}
    for name in sorted({p.name for p in parts}):
        rs = [p for p in parts if p.name == name]
        ms = _ms(sum(key(r) for r in rs) + sum(key(e) for e in backward_of(rs))) / steps
        out["parts"][name.removeprefix(PART_PREFIX)] = {"ms": ms, "share": ms / (_ms(total) / steps) if total else None}
    if use_device:  # the CPU-side view too (launch overhead, host work)
        cpu_total = sum(e.cpu_time_total for e in steps_ev)
        cpu_loss = sum(e.cpu_time_total for e in ranges) + sum(e.cpu_time_total for e in backward_of(ranges))
        out["cpu_step_ms"] = _ms(cpu_total) / steps
        out["cpu_loss_share"] = cpu_loss / cpu_total if cpu_total else None
    return out


def measure(trainer: Trainer, name: str, device: torch.device, cfg: dict) -> Measurement:
    m = Measurement(name)
    if over_budget():
        m.error = budget_note()
        return m
    warmup, repeat = cfg["warmup"], cfg["repeat"]
    try:
        def backward(loss):
            loss.backward()

        def forward_fresh():
            trainer.optimizer.zero_grad(set_to_none=True)
            return trainer.forward()

        m.fwd_bwd_ms = median_ms(trainer.step, device, warmup=warmup, repeat=repeat)
        m.fwd_ms = median_ms(trainer.forward, device, warmup=1, repeat=repeat)
        m.bwd_ms = median_ms(backward, device, warmup=1, repeat=repeat, setup=forward_fresh)
        m.extra["step_ms"] = m.fwd_bwd_ms
        m.extra["images_per_s"] = trainer.batch["images"].shape[0] / (m.fwd_bwd_ms * 1e-3)
        out = trainer.detached_outputs()

        def losses_alone():
            trainer.losses(out).backward()

        m.extra["losses_alone_ms"] = median_ms(losses_alone, device, warmup=1, repeat=repeat)
        m.extra["losses_alone_share"] = m.extra["losses_alone_ms"] / m.fwd_bwd_ms
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(cfg["profile_steps"]):
                with record_function("train_step"):
                    trainer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
        m.extra["profile"] = loss_share_from_profile(prof, cfg["profile_steps"], device)
        m.peak_bytes = peak_memory_bytes(trainer.step, device)
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"[:500]
    return m


def providers(device: torch.device) -> list[tuple[str, str]]:
    """(provider name, backend for use_backend): each fast backend, then the torch reference."""
    fast = [b for b in available_backends(device) if b != "torch" and not (b == "triton" and device.type == "cpu")]
    return [(f"pycmlt-{b}", b) for b in fast] + [("torch", "torch")]


def run(device: torch.device, *, quick: bool = False) -> dict:
    cfg = QUICK if quick else FULL
    batch = synthetic_batch(cfg["batch"], device)
    cases = []
    for method, label in (("cmltnet", "CMLTNet"), ("ce", "plain CE baseline")):
        ms = []
        for name, backend in providers(device):
            with use_backend(backend):
                trainer = Trainer(method, cfg["backbone"], batch, device)
                ms.append(measure(trainer, name, device, cfg))
                del trainer
        cases.append({"name": f"{label} {cfg['backbone']} batch={cfg['batch']}", "method": method,
                      "backbone": cfg["backbone"], "batch": cfg["batch"], **EMOJI_LT,
                      "dtype": "torch.float32", "baseline": "torch", "measurements": ms,
                      "ratios": ratios_against(ms, "torch")})
    cases.append(precision_case(device, cfg, batch))
    return {"cases": cases, "render": markdown,
            "settings": {k: cfg[k] for k in ("warmup", "repeat", "profile_steps")}}


PRECISION_VARIANTS = (("fp32", False), ("bf16", False), ("fp16", False), ("fp32", True), ("bf16", True))
QUICK_PRECISION_VARIANTS = (("fp32", False), ("bf16", False))  # --quick: no compilation, no CPU fp16 (slow)


def precision_case(device: torch.device, cfg: dict, batch: dict) -> dict:
    """CMLTNet steps in each training precision, eager and torch.compiled (TrainConfig.precision and
    .compile), on the automatic backend: step time and images/s against the fp32 eager step."""
    ms = []
    for precision, compile_model in (QUICK_PRECISION_VARIANTS if cfg is QUICK else PRECISION_VARIANTS):
        m = Measurement(precision + (" + compile" if compile_model else ""))
        ms.append(m)
        if over_budget():
            m.error = budget_note()
            continue
        try:
            trainer = Trainer("cmltnet", cfg["backbone"], batch, device, precision, compile_model)
            # compilation happens in the first steps: warm-up covers it
            m.fwd_bwd_ms = median_ms(trainer.step, device, warmup=cfg["warmup"] + (2 if compile_model else 0),
                                     repeat=cfg["repeat"])
            m.extra["images_per_s"] = batch["images"].shape[0] / (m.fwd_bwd_ms * 1e-3)
        except Exception as exc:
            m.error = f"{type(exc).__name__}: {exc}"[:500]
    return {"name": f"CMLTNet precision / compile {cfg['backbone']} batch={cfg['batch']}", "method": "cmltnet",
            "backbone": cfg["backbone"], "batch": cfg["batch"], **EMOJI_LT, "dtype": "autocast",
            "baseline": "fp32", "measurements": ms, "ratios": ratios_against(ms, "fp32")}


def markdown(payload: dict) -> str:
    from benchmarks.harness import fmt, machine_line

    lines = [f"# {payload['benchmark']} benchmark", "", machine_line(payload), "",
             "Step = forward + backward + SGD step (median). Losses share: torch.profiler attribution "
             "(the objective's forward ranges and the backward nodes they created); 'alone': the objective's "
             "forward + backward on detached model outputs, over the step time. Speed-up: against the torch backend, "
             "and against the fp32 eager step for the precision / compile rows.", "",
             "| configuration | provider | fwd ms | bwd ms | step ms | images/s | speed-up vs baseline | "
             "losses (profiler) | losses alone | peak extra MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in payload["cases"]:
        for m in case["measurements"]:
            if m.get("error"):
                lines.append(f"| {case['name']} | {m['provider']} | — | — | — | — | — | — | — | — |"
                             f" <!-- {m['error'][:80]} -->")
                continue
            prof = m["extra"].get("profile", {})
            share = prof.get("loss_share")
            lines.append(
                f"| {case['name']} | {m['provider']} | {fmt(m['fwd_ms'])} | {fmt(m['bwd_ms'])} | "
                f"{fmt(m['fwd_bwd_ms'])} | {fmt(m['extra'].get('images_per_s'))} | "
                f"{fmt(case['ratios'].get(m['provider'], {}).get('speedup_fwd_bwd'), 'x')} | "
                f"{fmt(share, pct=True)} ({fmt(prof.get('loss_fwd_ms', 0) + prof.get('loss_bwd_ms', 0))} ms) | "
                f"{fmt(m['extra'].get('losses_alone_share'), pct=True)} | "
                f"{fmt(None if m['peak_bytes'] is None else m['peak_bytes'] / 2**20)} |")
    parts = [(c["name"], m["provider"], m["extra"]["profile"]["parts"]) for c in payload["cases"]
             for m in c["measurements"] if not m.get("error") and m["extra"].get("profile", {}).get("parts")]
    if parts:
        lines += ["", "Per loss term (profiler; ms per step incl. its backward, share of the step):", ""]
        for name, provider, p in parts:
            lines.append(f"- {name} / {provider}: " + ", ".join(
                f"{k} {fmt(v['ms'])} ms ({fmt(v['share'], pct=True)})" for k, v in p.items()))
    failed = [f"- {c['name']} / {m['provider']}: {m['error']}" for c in payload["cases"]
              for m in c["measurements"] if m.get("error")]
    if failed:
        lines += ["", "Configurations that could not run:", *failed]
    return "\n".join(lines) + "\n"
