"""The one place that chooses the compute device (lesson 00)."""
from __future__ import annotations

import os


def get_device(verbose: bool = False) -> str:
    """Return 'cuda' when a GPU is usable, else 'cpu'; ``ISC_DEVICE`` overrides.

    Apple's 'mps' is left out on purpose: several ops the course uses are not
    known good there, and the course is built to run on a laptop CPU.
    """
    forced = os.environ.get("ISC_DEVICE", "").strip()
    if forced:
        dev = forced
    else:
        try:
            import torch
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            dev = "cpu"
    if verbose:
        print(f"device: {dev}")
    return dev


def rank_world() -> tuple[int, int]:
    """(rank, world size) under ``torchrun``, initialising the process group once (nccl on
    GPUs, gloo on CPUs); (0, 1) in a plain process. Lessons 03 and 07."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world
