"""Checkpoints of copy-detection descriptors (lessons 03, 08): the network a
:class:`~isc_helpers.core.train_config.TrainConfig` describes, saved weights-only
(``torch.load(..., weights_only=True)``), written atomically, with the config and validation
history; :func:`export_descriptor` makes the small float16 copy the course ships.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from . import models
from .formats import atomic_write
from .errors import MissingFileError
from .train_config import TrainConfig


def build_model(cfg: TrainConfig) -> nn.Module:
    """The descriptor network of a config: backbone -> GeM -> linear (no bias) -> L2."""
    import timm
    if cfg.backbone == "efficientnet_lite0":
        backbone = models.efficientnet_lite0(pretrained=bool(cfg.pretrained))
    else:
        backbone = timm.create_model(cfg.backbone, pretrained=False)
    backbone.reset_classifier(0)
    return models.DescriptorNet(backbone, dim=cfg.dim, p=cfg.gem_p)


def weights_sha1(path) -> str:
    """The first 12 hex digits of a file's SHA-1 ("missing" when absent): a weights file's cache key."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12] if Path(path).exists() else "missing"


def input_weights(cfg: TrainConfig) -> dict:
    """:func:`weights_sha1` of the weight files a run starts from or stays compatible with
    (``init_from``, ``compat_with``): a run resumes only while they are unchanged."""
    return {name: weights_sha1(p) for name, p in (("init_from", cfg.init_from), ("compat_with", cfg.compat_with))
            if p and Path(p).is_file()}


def save_checkpoint(path: Path, net, optimizer, head, step: int, cfg: TrainConfig, history: list,
                    bank=None) -> None:
    """Atomic save; loadable with ``torch.load(path, weights_only=True)``."""
    state = {"model": net.state_dict(), "step": step, "config": cfg.to_json(),
             "history": json.dumps(history), "input_weights": json.dumps(input_weights(cfg))}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if head is not None:
        state["head"] = head.state_dict()
    if bank is not None:
        state["memory_emb"], state["memory_labels"] = bank.emb, bank.labels
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_descriptor(path, device=None) -> tuple[nn.Module, TrainConfig, list]:
    """A trained descriptor network from a checkpoint (weights only), with its config and history."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"No checkpoint at {path}; train one with `isc-course train --out DIR` "
                                "(it writes DIR/model.pt).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_json(state["config"])
    cfg.pretrained = False                           # the checkpoint holds every weight
    net = build_model(cfg)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return net.to(device or "cpu").eval(), cfg, json.loads(state["history"])


def export_descriptor(src, dst, half: bool = True, **provenance) -> Path:
    """Write a small, weights-only copy of a trained model (float16 by default) with its config,
    history and any provenance (command, seed, time, µAP) for sharing or committing."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    model = {k: v.half() if half and v.is_floating_point() else v for k, v in state["model"].items()}
    out = {"model": model, "step": state["step"], "config": state["config"], "history": state["history"],
           "provenance": json.dumps(provenance)}
    atomic_write(Path(dst), lambda tmp: torch.save(out, tmp))
    return Path(dst)


def provenance(path) -> dict:
    """The provenance stored by :func:`export_descriptor` (command, seed, time, µAP...)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return json.loads(state.get("provenance", "{}"))
