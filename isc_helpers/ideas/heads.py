"""A small trainable head on frozen ImageNet features: the CPU-sized way to learn a new task
from a few hundred examples (lesson 04's overlay detector, lesson 08's pair verifier).

Both learners share everything here: the frozen EfficientNet-Lite0 backbone, one training
loop (:func:`fit_head`), and a cache of trained heads keyed by the training photos' content
and the settings.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..core import cache
from ..core.formats import atomic_write
from ..core.models import efficientnet_lite0, preprocess


class FrozenBackboneHead:
    """Frozen ImageNet EfficientNet-Lite0 features and a small trainable head.
    ``size``: square input side, or None to keep the images' own size (they must share it)."""

    def __init__(self, head: nn.Module, size: int | None = 160):
        self.backbone = efficientnet_lite0(pretrained=True).eval()
        self.head = head
        self.size = size

    @torch.no_grad()
    def features(self, images, batch_size: int = 64) -> torch.Tensor:
        out = [self.backbone.forward_features(preprocess(images[i:i + batch_size], self.size))
               for i in range(0, len(images), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def head_output(self, feats) -> torch.Tensor:
        self.head.eval()
        return self.head(feats)


def fit_head(head: nn.Module, feats: torch.Tensor, loss_fn, steps: int, lr: float, weight_decay: float,
             seed: int, n: int | None = None, batch: int = 64, desc: str = "head", progress: bool = True) -> None:
    """Train ``head`` on precomputed features: ``steps`` AdamW steps, each on ``batch`` rows drawn
    (seeded) from the first ``n`` rows; ``loss_fn(head_output, row_indices)`` gives the loss."""
    from tqdm.auto import tqdm
    n = len(feats) if n is None else n
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    head.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress):
        idx = torch.randint(0, n, (batch,), generator=g)
        loss = loss_fn(head(feats[idx]), idx)
        opt.zero_grad()
        loss.backward()
        opt.step()


def load_head(path, head: nn.Module) -> dict | None:
    """Load a trained head saved by :func:`save_head` into ``head``; its report, or None if absent."""
    if not Path(path).exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    head.load_state_dict(state["head"])
    return {k: float(v) for k, v in state["report"].items()}


def save_head(path, head: nn.Module, report: dict) -> None:
    """Save a trained head and its report atomically (loadable with ``weights_only=True``)."""
    atomic_write(Path(path), lambda tmp: torch.save({"head": head.state_dict(), "report": report}, tmp))


def head_cache_path(kind: str, ds, *settings) -> Path:
    """Where a head trained on a dataset's training photos with given settings is cached:
    ``<cache>/<kind>/head-<hash>.pt``, keyed by the photos' ids and each file's content
    fingerprint (``cache.dataset_key``), so an edited or replaced training photo trains it again."""
    ids = ds.photo_train_ids()
    content = cache.dataset_key(ds.root, ids, [ds.image_path(i) for i in ids])
    return cache.cache_dir() / kind / f"head-{cache.short_hash(content, *settings)}.pt"
