"""Training objectives for copy-detection descriptors (lesson 03).

Every objective takes L2-normalised embeddings of two edited views of the same batch of
training images (row i of ``z1`` and row i of ``z2`` come from the same image) and returns
a scalar loss. Settings as published (see the course's ISC21 facts) and how the course
scales them down for a CPU are in lesson 03.

* :func:`info_nce` + :func:`koleo`: SSCD (SimCLR's InfoNCE, temperature 0.05, plus a
  differential-entropy term that spreads descriptors out; lambda 30 published, 10 advised).
* :func:`contrastive` with a :class:`MemoryBank`: the descriptor track's 1st place (lyakaap):
  positives pulled together, negatives pushed past a margin, negatives drawn also from a
  memory of embeddings of earlier batches (cross-batch memory).
* :func:`barlow_twins`: the *pretraining* of VisionForce (descriptor track 3rd, matching track
  1st), here used as a training loss for comparison (no winner did that; their copy-detection
  loss was classification + triplet, written in lesson 03): the cross-correlation of the two
  views' (batch-standardised) embeddings is pushed to the identity.
* :class:`ArcFace`: the descriptor track's 2nd place (socom20): each training image its own class, additive
  angular margin 0.4, scale 40.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05, memory: torch.Tensor | None = None,
             same: torch.Tensor | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the 2N - 1 others.

    ``memory`` (M x d, earlier batches' embeddings) adds M more negatives to every view; ``same``
    (2N x M, True where a memory row is an image of the view itself) leaves those out.
    """
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))                  # a view is not its own candidate
    if memory is not None and len(memory):
        extra = z @ memory.T / temperature
        logits = torch.cat([logits, extra.masked_fill(same, float("-inf")) if same is not None else extra], 1)
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


def sscd_loss(z1, z2, temperature: float = 0.05, entropy_weight: float = 10.0, labels: torch.Tensor | None = None,
              bank: "MemoryBank | None" = None) -> torch.Tensor:
    """SSCD: InfoNCE + entropy_weight x KoLeo over all views. With a ``bank``, earlier batches'
    embeddings of *other* images are extra InfoNCE negatives; the bank is updated afterwards."""
    memory = same = None
    if bank is not None and len(bank):
        memory, mem_labels = bank.get(z1.device)
        same = labels.to(z1.device).repeat(2)[:, None] == mem_labels[None, :]
    loss = info_nce(z1, z2, temperature, memory, same) + entropy_weight * koleo(torch.cat([z1, z2]))
    if bank is not None:
        bank.add(z1, labels)
    return loss


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

    def forward(self, z: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        cos = F.linear(z, F.normalize(self.weight)).clamp(-1 + 1e-6, 1 - 1e-6)
        theta = torch.acos(cos)
        target = torch.cos(theta + self.margin)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        logits = self.scale * torch.where(onehot, target, cos)
        return F.cross_entropy(logits, labels, reduction=reduction)


class Objective(nn.Module):
    """One objective of a training config as a module: ``loss(z1, z2, labels)`` for two views'
    embeddings and their image labels. Holds what the objective learns or remembers (ArcFace's
    class weights, the contrastive memory bank), so the training loop needs no special cases."""

    def __init__(self, cfg, n_classes: int):
        super().__init__()
        self.cfg = cfg
        self.arcface = ArcFace(cfg.dim, n_classes, cfg.arcface_margin, cfg.arcface_scale) \
            if cfg.objective == "arcface" else None
        self.bank = MemoryBank(cfg.memory, cfg.dim) if cfg.memory else None

    def forward(self, z1, z2, labels) -> torch.Tensor:
        cfg = self.cfg
        if cfg.objective == "sscd":
            return sscd_loss(z1, z2, cfg.temperature, cfg.entropy_weight, labels, self.bank)
        if cfg.objective == "contrastive":
            return contrastive(z1, z2, labels, self.bank, neg_margin=cfg.neg_margin)
        if cfg.objective == "barlow_twins":
            return barlow_twins(z1, z2)
        return 0.5 * (self.arcface(z1, labels) + self.arcface(z2, labels))
