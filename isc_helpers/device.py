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
