"""Training a copy-detection descriptor on a CPU (lesson 03).

Training pairs are two edited views of one training image (the edits of lesson 01, their
strength raised over training); a network learns to give both views the same descriptor
(:mod:`isc_helpers.objectives`). Everything is derived from (seed, step, rank), so a run is
reproducible and resumes exactly from its last checkpoint; under ``torchrun`` each process
edits its own images and gradients are averaged (DistributedDataParallel; gloo on CPU).
Validation is a copy-detection task made of held-out *training* images, never the queries.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from . import augment, metrics, minidisc, models, search
from .checkpoints import TrainConfig, build_model, input_weights, load_descriptor, save_checkpoint
from .device import get_device, rank_world
from .objectives import OBJECTIVES, Objective


def example_views(ds, cfg: TrainConfig, step: int, n: int = 4):
    """The first ``n`` training pairs (two edited views of one image) the loop would see at ``step``."""
    train_ids, _ = split_training(ds, cfg)
    idx = _batch_indices(cfg, step, 0, len(train_ids))[:n]
    images = _load_small(ds, [train_ids[k] for k in idx], cfg.image_side)   # only the images shown
    assets = minidisc.edit_assets("training")
    return [_two_views(im, cfg, step, 0, j, assets) for j, im in enumerate(images)]


def split_training(ds, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): a seeded split of the training images, never the queries."""
    if cfg.train_on not in ("photos", "all"):
        raise ValueError("train_on must be 'photos' or 'all'")
    ids = sorted(ds.photo_train_ids() if cfg.train_on == "photos" else ds.train_ids)
    order = np.random.RandomState(cfg.seed).permutation(len(ids))
    n_val = min(cfg.n_val, len(ids) // 4)
    return [ids[i] for i in order[n_val:]], [ids[i] for i in order[:n_val]]


def _load_small(ds, ids, side):
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


# How training edits its views: lesson 01's sampler as mini-DISC uses it, or harder: the families
# where the trained descriptor was weakest out of domain (colour, blur, text, stripes, another photo
# overlaid) three times as often, and chains of up to 4 edits. Both are AugLy only: the held-out
# editor of the validation stays unseen.
WEAK_FAMILIES = ("colour", "grayscale", "blur", "text", "stripes", "overlay_image")
TRAIN_EDITS = {"augly": dict(max_edits=3, boost=None),
               "augly-hard": dict(max_edits=4, boost={f: 3.0 for f in WEAK_FAMILIES})}


def _two_views(image, cfg: TrainConfig, step: int, rank: int, j: int, assets):
    """The two edited views of the j-th image of a batch (edit strength from the schedule)."""
    _, strength = cfg.stage(step)
    return tuple(augment.random_edit(image, seed=_seed(cfg.seed, step, rank, j, v), assets=assets,
                                     max_strength=strength, **TRAIN_EDITS[cfg.edits]).image for v in range(2))


MIXES = ("", "cutmix", "mixup")


def _box(rng: np.random.RandomState, side: int, area: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random box covering about ``area`` of a side x side view."""
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    h = int(np.clip(round(side * np.sqrt(area / aspect)), 1, side))
    w = int(np.clip(round(side * np.sqrt(area * aspect)), 1, side))
    return rng.randint(side - h + 1), rng.randint(side - w + 1), h, w


def check_mix(cfg: TrainConfig) -> None:
    """Refuse mixing settings the loop cannot honour, before any work."""
    if cfg.mix not in MIXES or (cfg.mix and cfg.objective != "arcface"):
        raise ValueError(f"mix must be one of {MIXES[1:]} with the arcface objective, or empty; got "
                         f"mix={cfg.mix!r} with objective={cfg.objective!r}")
    if not 0 <= cfg.mix_prob <= 1:
        raise ValueError(f"mix_prob is a share of the second views, between 0 and 1; got {cfg.mix_prob}")


ARCFACE_INITS = ("random", "imprint")


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings the loop cannot honour (objective, mixing, edits, sizes, ArcFace's start), before any work."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    check_mix(cfg)
    if cfg.edits not in TRAIN_EDITS:
        raise ValueError(f"edits must be one of {tuple(TRAIN_EDITS)}, got {cfg.edits!r}")
    if not isinstance(cfg.multires, (tuple, list)) or any(
            type(s) is not int or not 32 <= s <= 1024 for s in cfg.multires):
        raise ValueError("multires holds input sizes in pixels, a tuple of whole numbers from 32 to 1024 such as "
                         f"(96, 128, 160), or () for the schedule's sizes; got {cfg.multires!r}")
    if cfg.arcface_init not in ARCFACE_INITS or (cfg.arcface_init == "imprint" and cfg.objective != "arcface"):
        raise ValueError(f"arcface_init must be one of {ARCFACE_INITS} ('imprint' with the arcface objective); got "
                         f"arcface_init={cfg.arcface_init!r} with objective={cfg.objective!r}")


def imprint_classes(net, objective, images, size: int, device) -> None:
    """Start ArcFace's class centres at the network's own descriptors of the (unedited) training
    images, not at random ("weight imprinting"): each view then begins near its own class, so the
    first steps refine an already sensible descriptor instead of chasing random centres."""
    z = models.embed_images(net, images, size, device=device)
    with torch.no_grad():
        objective.arcface.weight.copy_(torch.from_numpy(z).to(objective.arcface.weight))


def mix_views(x: torch.Tensor, cfg: TrainConfig, step: int, rank: int = 0):
    """Mix other images of the batch into a share (``cfg.mix_prob``) of the (square) second views,
    after SSCD's idea of training on mixed images: ``cutmix`` here pastes a whole partner image,
    shrunk, into a box of 10-50% of the view (another photo overlaid, not classic CutMix's same
    region); ``mixup`` blends 20-50% of a partner in. Seeded by (seed, step, rank); the loss weighs
    each image by its share (:class:`~isc_helpers.objectives.Objective`).

    Returns (views, partner position in the batch, weight of each view's own image: 1 = unmixed)."""
    n, side = len(x), x.shape[-1]
    partner, own = np.arange(n), np.ones(n, np.float32)
    check_mix(cfg)
    if not cfg.mix or n < 2:
        return x, torch.as_tensor(partner), torch.as_tensor(own)
    rng = np.random.RandomState(_seed(cfg.seed, step, rank, 1_000_003) % (2 ** 32))
    out = x.clone()
    for j in range(n):
        if rng.rand() >= cfg.mix_prob:
            continue
        k = int((j + 1 + rng.randint(n - 1)) % n)          # any other image of the batch
        if cfg.mix == "mixup":
            share = rng.uniform(0.2, 0.5)
            out[j] = (1 - share) * x[j] + share * x[k]
        else:
            top, left, h, w = _box(rng, side, rng.uniform(0.1, 0.5))
            out[j, :, top:top + h, left:left + w] = F.interpolate(x[k:k + 1], size=(h, w), mode="bilinear",
                                                                 align_corners=False, antialias=True)[0]
            share = h * w / side ** 2
        partner[j], own[j] = k, 1 - share
    return out, torch.as_tensor(partner), torch.as_tensor(own)


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
        step = self.start + i
        size = self.cfg.train_size(step)
        idx = _batch_indices(self.cfg, step, self.rank, len(self.images))
        pairs = [_two_views(self.images[k], self.cfg, step, self.rank, j, self.assets) for j, k in enumerate(idx)]
        x1, x2 = (models.preprocess([p[v] for p in pairs], size) for v in range(2))
        mix = None
        if self.cfg.mix:
            x2, *mix = mix_views(x2, self.cfg, step, self.rank)
        return x1, x2, torch.as_tensor(idx, dtype=torch.long), mix


VAL_EDITORS = minidisc.EDITORS          # the two edit generators, as the tuning sets use them


def val_editors(cfg: TrainConfig) -> list[str]:
    """The editors of the validation queries, primary first: ``augly`` (training's own edits),
    ``transfer`` (the second generator, whose families training never sees) or ``both``."""
    names = ["transfer", "augly"] if cfg.val_edits == "both" else [cfg.val_edits]
    if any(n not in VAL_EDITORS for n in names):
        raise ValueError(f"val_edits must be 'augly', 'transfer' or 'both', got {cfg.val_edits!r}")
    return names


def make_validation(ds, val_ids, seed: int, side: int = 256, editor: str = "augly", images=None):
    """A small copy-detection task built from held-out *training* images (never the queries).

    Half of the held-out images are references; each gets one edited copy as a query; the
    other half, edited the same way, are distractor queries. ``editor`` makes the queries:
    ``augly`` (the edits training uses) or ``transfer`` (a generator training never sees,
    which predicts how a descriptor does on other edits). ``images``: the held-out images
    already loaded at ``side`` (one decoding serves every editor). Returns (refs, queries, gt).
    """
    images = images if images is not None else _load_small(ds, val_ids, side)
    half = len(images) // 2
    assets = minidisc.edit_assets("training")
    refs = images[:half]
    queries, rows = [], []
    for i, im in enumerate(images):
        queries.append(VAL_EDITORS[editor](im, seed=_seed(seed, 999_983, i), assets=assets).image)
        rows.append({"query_id": f"Q{i:05d}", "reference_id": f"R{i:06d}" if i < half else ""})
    return refs, queries, pd.DataFrame(rows)


def validation_tasks(ds, val_ids, cfg: TrainConfig) -> dict:
    """{editor: validation task} for a run's held-out images (decoded once, every editor of
    :func:`val_editors`), as the training loop validates on them."""
    held_out = _load_small(ds, val_ids, cfg.image_side)
    return {e: make_validation(ds, val_ids, cfg.seed, cfg.image_side, e, held_out) for e in val_editors(cfg)}


def validate(net, val, size, device) -> float:
    """µAP of the network on one validation task (k=10 per query, inner product)."""
    refs, queries, gt = val
    r, q = (models.embed_images(net, x, size, device=device) for x in (refs, queries))
    preds = search.search(q, list(gt.query_id), r, [f"R{i:06d}" for i in range(len(refs))], k=10)
    return metrics.evaluate(preds, gt).uap


def validation_entry(net, vals: dict, size, device) -> dict:
    """``val_uap`` (the primary editor's task) and ``val_uap_<editor>`` for every task."""
    scores = {f"val_uap_{name}": validate(net, task, size, device) for name, task in vals.items()}
    return {"val_uap": next(iter(scores.values())), **scores}


def _device(device, world: int) -> torch.device:
    device = torch.device(device if device is not None else get_device())
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _networks(cfg: TrainConfig, n_classes: int, device):
    """(network to train, frozen old network or None, objective), built in a fixed order (seeded)."""
    net = build_model(cfg).to(device)
    if cfg.init_from:
        net.load_state_dict(load_descriptor(cfg.init_from)[0].state_dict())
    for module in frozen_modules(net, cfg.freeze_blocks):
        module.requires_grad_(False)
    old_net = None
    if cfg.compat_with:                    # backward-compatible training: the old model is frozen
        old_net = load_descriptor(cfg.compat_with, device)[0].eval()
        for p in old_net.parameters():
            p.requires_grad_(False)
        if old_net.dim != cfg.dim:
            raise ValueError(f"compat_with: the old model has {old_net.dim} dimensions, this one {cfg.dim}.")
    return net, old_net, Objective(cfg, n_classes).to(device)


def frozen_modules(net, n_blocks: int) -> list[nn.Module]:
    """The stem and first ``n_blocks`` stages of the backbone (kept at their ImageNet weights)."""
    if n_blocks <= 0:
        return []
    bb = net.backbone
    if not hasattr(bb, "blocks") or n_blocks > len(bb.blocks):
        raise ValueError(f"freeze_blocks={n_blocks}: this backbone has "
                         f"{len(getattr(bb, 'blocks', []))} stages that can be frozen.")
    return [bb.conv_stem, bb.bn1, *bb.blocks[:n_blocks]]


def interpolate_backbone(net, alpha: float, start=None) -> nn.Module:
    """A copy of ``net`` whose backbone is ``(1 - alpha) * start + alpha * net`` (weights and
    BatchNorm statistics; integer buffers stay the trained ones); the projection is kept.
    ``start``: a backbone (or descriptor network) of the same architecture, by default the ImageNet
    EfficientNet-Lite0, which is the net's own starting point for runs that began from ImageNet
    (the course's recipe, not ``init_from`` runs). alpha=1 is ``net`` itself, alpha=0 ``start``."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be between 0 (the starting backbone) and 1 (the trained one), got {alpha}.")
    start = getattr(start, "backbone", start) if start is not None else models.efficientnet_lite0(pretrained=True)
    origin = start.state_dict()
    out = copy.deepcopy(net).eval()
    mixed = {}
    for key, value in net.backbone.state_dict().items():
        if key not in origin or origin[key].shape != value.shape:
            raise ValueError(f"the starting backbone has no weight {key!r} of shape {tuple(value.shape)}: pass "
                             "start=<the backbone this net was trained from> (the default is the ImageNet "
                             "EfficientNet-Lite0).")
        mixed[key] = (torch.lerp(origin[key].to(value), value, float(alpha)) if value.is_floating_point()
                      else value)
    out.backbone.load_state_dict(mixed)
    return out


def refresh_batchnorm(net, images, size: int, device=None, batch_size: int = 32) -> nn.Module:
    """Re-estimate the backbone's BatchNorm statistics on ``images`` (PIL, e.g. training images),
    in place: averaged weights do not have averaged activation statistics. Returns ``net`` (eval)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not images:
        raise ValueError("refresh_batchnorm needs some images (a few hundred training images).")
    momenta = [m.momentum for m in norms]
    net.eval()
    for m in norms:                                         # only BatchNorm in training mode
        m.reset_running_stats()
        m.momentum = None                                   # a plain average over every batch
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            net(models.preprocess(images[i:i + batch_size], size).to(device or "cpu"))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()


def _optimizer(cfg: TrainConfig, net, objective) -> torch.optim.Optimizer:
    """AdamW; the projection (and ArcFace's class weights) learn at ``head_lr``, the backbone at ``lr``."""
    head_params = list(net.proj.parameters()) + list(objective.parameters())
    ids_head = {id(p) for p in head_params}
    groups = [{"params": [p for p in net.parameters() if id(p) not in ids_head and p.requires_grad], "lr": cfg.lr},
              {"params": head_params, "lr": cfg.head_lr}]
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _resume(last: Path, cfg: TrainConfig, net, opt, objective) -> tuple[int, list]:
    """Load ``last.pt`` into the network, optimizer and objective: (step, history)."""
    state = torch.load(last, map_location="cpu", weights_only=True)
    # settings added to TrainConfig after a checkpoint was written count as their defaults
    saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **json.loads(state["config"])}
    if saved != json.loads(json.dumps(asdict(cfg))):
        raise ValueError(f"{last} was written by a different configuration; use another out_dir "
                         "or delete it to start over.")
    if json.loads(state.get("input_weights", "{}")) != input_weights(cfg):
        raise ValueError(f"{last} started from other weights than {cfg.init_from or cfg.compat_with} holds now "
                         "(init_from / compat_with changed since); use another out_dir or delete it to start over.")
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if objective.arcface is not None:
        objective.arcface.load_state_dict(state["head"])
    if objective.bank is not None:
        objective.bank.emb, objective.bank.labels = state["memory_emb"], state["memory_labels"]
    return int(state["step"]), json.loads(state["history"])


def train_step(model, net, objective, opt, x1, x2, labels, cfg: TrainConfig, step: int, device,
               old_net=None, mix=None) -> float:
    """One optimisation step on a batch of view pairs: forward both views, the objective's loss
    (plus the compatibility term when an old model is given), backward, update. Returns the loss.
    ``mix``: (partner, own weight) of second views holding two images (:func:`mix_views`)."""
    model.train()
    fixed = list(net.backbone.modules()) if cfg.freeze_bn else \
        [m for f in frozen_modules(net, cfg.freeze_blocks) for m in f.modules()]
    for m in fixed:                           # frozen parts keep their BatchNorm statistics too
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    torch.manual_seed(_seed(cfg.seed, step) % (2 ** 31))
    z = model(torch.cat([x1, x2]).to(device))
    z1, z2 = z.chunk(2)
    loss = objective(z1, z2, labels.to(device), None if mix is None else [t.to(device) for t in mix])
    if old_net is not None:            # pull each view's new descriptor onto the old model's
        with torch.no_grad():
            t = old_net(torch.cat([x1, x2]).to(device))
        loss = loss + cfg.compat_weight * (1 - (z * t).sum(1)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _save_last(out_dir: Path, net, opt, objective, step: int, cfg: TrainConfig, history: list) -> None:
    save_checkpoint(out_dir / "last.pt", net, opt, objective.arcface, step, cfg, history, objective.bank)


def _loader(images, cfg: TrainConfig, start: int, rank: int, world: int):
    return torch.utils.data.DataLoader(
        _Batches(images, cfg, minidisc.edit_assets("training"), start, rank, world), batch_size=None,
        num_workers=cfg.workers, persistent_workers=False,
        multiprocessing_context="fork" if cfg.workers and hasattr(os, "fork") else None)


def _loop(run: dict, cfg: TrainConfig, start: int, history: list, stop_after, progress: bool) -> int:
    """The training loop from ``start``: steps, validation every ``val_every``, checkpoints every
    ``ckpt_every`` (and when stopped early). Returns the last step done."""
    from tqdm.auto import tqdm
    rank, net, device = run["rank"], run["net"], run["device"]
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.objective}", disable=not progress or rank != 0)
    running, step, t0 = [], start, time.time()
    for i, (x1, x2, labels, mix) in enumerate(_loader(run["images"], cfg, start, rank, run["world"])):
        if stop_after is not None and i >= stop_after:
            break
        step = start + i + 1
        running.append(train_step(run["model"], net, run["objective"], run["opt"], x1, x2, labels, cfg, step,
                                  device, run["old_net"], mix))
        bar.update(1)
        if rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            history.append({"step": step, "loss": float(np.mean(running)),
                            **validation_entry(net, run["val"], cfg.stage(step - 1)[0], device),
                            "seconds": time.time() - t0})
            running = []
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val_uAP=f"{history[-1]['val_uap']:.3f}")
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps or
                          (stop_after is not None and i + 1 == stop_after)):
            _save_last(run["out_dir"], net, run["opt"], run["objective"], step, cfg, history)
    bar.close()
    return step


def train(ds, cfg: TrainConfig, out_dir, device=None, progress: bool = True, resume: bool = True,
          stop_after: int | None = None) -> dict:
    """Train a descriptor on ``ds``'s training images; returns the history (loss, validation µAP).

    ``out_dir/last.pt`` is written every ``ckpt_every`` steps (atomically) and resumed from when
    present; ``out_dir/model.pt`` holds the final weights. ``stop_after`` ends this call after
    that many steps (a checkpoint is written), as an interruption would; call again to resume.
    Under ``torchrun`` each process edits its own images and gradients are averaged
    (DistributedDataParallel; gloo on CPU).
    """
    check_config(cfg)
    rank, world = rank_world()
    device = _device(device, world)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train_ids, val_ids = split_training(ds, cfg)
    images = _load_small(ds, train_ids, cfg.image_side)
    net, old_net, objective = _networks(cfg, len(images), device)
    opt = _optimizer(cfg, net, objective)
    start, history = 0, []
    if resume and (out_dir / "last.pt").exists():
        start, history = _resume(out_dir / "last.pt", cfg, net, opt, objective)
        if rank == 0 and progress:
            print(f"resuming from step {start} ({out_dir / 'last.pt'})")
    elif cfg.arcface_init == "imprint":
        imprint_classes(net, objective, images, cfg.stage(0)[0], device)
    model = net if world == 1 else nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    val = None
    if rank == 0:
        val = validation_tasks(ds, val_ids, cfg)
    if rank == 0 and start == 0:
        history.append({"step": 0, **validation_entry(net, val, cfg.stage(cfg.steps - 1)[0], device)})
    run = dict(rank=rank, world=world, device=device, net=net, model=model, old_net=old_net, objective=objective,
               opt=opt, images=images, val=val, out_dir=out_dir)
    t0 = time.time()
    step = _loop(run, cfg, start, history, stop_after, progress)
    if rank == 0 and step == cfg.steps:
        save_checkpoint(out_dir / "model.pt", net, None, None, cfg.steps, cfg, history)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return {"history": history, "seconds": time.time() - t0, "out_dir": str(out_dir), "step": step,
            "done": step == cfg.steps}


def search_with(net, ds, size: int, k: int = 10, device=None):
    """Predictions of a descriptor network on a dataset: extract queries and references, search."""
    q = models.extract(net, ds.paths("query"), size=size, device=device)
    r = models.extract(net, ds.paths("reference"), size=size, device=device)
    return search.search(q, ds.query_ids, r, ds.reference_ids, k=k)


def evaluate_checkpoint(path, ds, k: int = 10, device=None) -> dict:
    """Score a trained descriptor on a dataset's queries: µAP, recall@P90, recall@1, images/s."""
    net, cfg, _ = load_descriptor(path, device)
    t0 = time.perf_counter()
    preds = search_with(net, ds, cfg.sizes[-1], k, device)
    seconds = time.perf_counter() - t0                 # extraction of every image, plus the search
    ev = metrics.evaluate(preds, ds.ground_truth())
    return {"uap": ev.uap, "recall_at_p90": ev.recall_at_p90, "recall_at_1": ev.recall_at_1,
            "images_per_second": (len(ds.query_ids) + len(ds.reference_ids)) / seconds}


