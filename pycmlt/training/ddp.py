"""Distributed data parallel (DDP) set-up of a training run under `torchrun --nproc_per_node K -m
pycmlt train ...`: reads the torchrun environment, uses gloo on CPU and NCCL on GPU, wraps the model
in DDP. (The collectives the losses use are pycmlt.distributed.)"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DDPContext:
    enabled: bool
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def wrap(self, model: torch.nn.Module, *, may_skip_parameters: bool = False) -> torch.nn.Module:
        """DDP around the model; may_skip_parameters when a step can leave parameters unused
        (CMLTNet's text modules get no gradient from a batch without words)."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                         find_unused_parameters=may_skip_parameters)

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = DDPContext(False, 0, 1, torch.device("cpu"))


def init_from_env(device: str = "auto") -> DDPContext:
    """A DDPContext from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DDPContext(True, rank, world, dev)
