"""Training a copy-detection descriptor on a CPU (lesson 03).

Training pairs are two edited views of one training image (the edits of lesson 01, their
strength raised over training); a network learns to give both views the same descriptor
(:mod:`isc_helpers.ideas.objectives`). Everything is derived from (seed, step, rank), so a run is
reproducible and resumes exactly from its last checkpoint; under ``torchrun`` each process
edits its own images and gradients are averaged (DistributedDataParallel; gloo on CPU).
Validation is a copy-detection task made of held-out *training* images, never the queries.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from PIL import Image

from ..core import descriptors, formats, metrics, models, search
from ..datasets import augment, build, minidisc
from ..core.checkpoints import build_model, input_weights, load_descriptor, save_checkpoint
from ..core.train_config import TrainConfig
from ..core.device import get_device, rank_world
from .objectives import Objective
from ..core.errors import SettingError


def example_views(ds, cfg: TrainConfig, step: int, n: int = 4):
    """The first ``n`` training pairs (two edited views of one image) the loop would see at ``step``."""
    train_ids, _ = split_training(ds, cfg)
    idx = _batch_indices(cfg, step, 0, len(train_ids))[:n]
    images = load_small(ds, [train_ids[k] for k in idx], cfg.image_side)   # only the images shown
    assets = minidisc.edit_assets("training")
    return [_two_views(im, cfg, step, 0, j, assets) for j, im in enumerate(images)]


def split_training(ds, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): a seeded split of the training images, never the queries."""
    ids = sorted(ds.photo_train_ids() if cfg.train_on == "photos" else ds.train_ids)
    order = np.random.RandomState(cfg.seed).permutation(len(ids))
    n_val = min(cfg.n_val, len(ids) // 4)
    return [ids[i] for i in order[n_val:]], [ids[i] for i in order[:n_val]]


def load_small(ds, ids, side):
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
    _, strength = cfg.stage(step)
    return tuple(augment.random_edit(image, seed=_seed(cfg.seed, step, rank, j, v), assets=assets,
                                     max_strength=strength).image for v in range(2))


def _batch(image_of, n_images: int, cfg: TrainConfig, step: int, rank: int, assets):
    """The batch of (step, rank): two edited views of each image as network inputs (x1, x2) and the
    images' labels (their positions among the ``n_images`` training images); ``image_of(k)``: image k."""
    size = cfg.stage(step)[0]
    idx = _batch_indices(cfg, step, rank, n_images)
    pairs = [_two_views(image_of(k), cfg, step, rank, j, assets) for j, k in enumerate(idx)]
    x1, x2 = (models.preprocess([p[v] for p in pairs], size) for v in range(2))
    return x1, x2, torch.as_tensor(idx, dtype=torch.long)


def example_batch(ds, cfg: TrainConfig, step: int, rank: int = 0):
    """The training loop's own batch at ``step``: (x1, x2, labels), as :func:`train` would draw it,
    loading only the batch's images (lesson 03 runs the objectives and one step on it)."""
    train_ids, _ = split_training(ds, cfg)
    idx = _batch_indices(cfg, step, rank, len(train_ids))
    images = dict(zip(idx.tolist(), load_small(ds, [train_ids[k] for k in idx], cfg.image_side)))
    return _batch(images.__getitem__, len(train_ids), cfg, step, rank, minidisc.edit_assets("training"))


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
        return _batch(self.images.__getitem__, len(self.images), self.cfg, self.start + i, self.rank, self.assets)


def val_editors(cfg: TrainConfig) -> list[str]:
    """The editors of the validation queries, primary first: ``augly`` (training's own edits),
    ``transfer`` (the second generator, whose families training never sees) or ``both``."""
    return ["transfer", "augly"] if cfg.val_edits == "both" else [cfg.val_edits]


def make_validation(ds, val_ids, seed: int, side: int = 256, editor: str = "augly", images=None):
    """A small copy-detection task built from held-out *training* images (never the queries).

    Half of the held-out images are references; each gets one edited copy as a query; the
    other half, edited the same way, are distractor queries. ``editor`` makes the queries:
    ``augly`` (the edits training uses) or ``transfer`` (a generator training never sees,
    which predicts how a descriptor does on other edits). ``images``: the held-out images
    already loaded at ``side`` (one decoding serves every editor). Returns (refs, queries, gt).
    """
    images = images if images is not None else load_small(ds, val_ids, side)
    half = len(images) // 2
    assets = minidisc.edit_assets("training")
    plan = [(lambda im=im: im, formats.make_id("reference", i) if i < half else "", {}) for i, im in enumerate(images)]
    made = list(build.edited_queries(plan, lambda i, im: build.EDITORS[editor](im, seed=_seed(seed, 999_983, i),
                                                                               assets=assets)))
    return images[:half], [trace.image for _, trace, _, _ in made], pd.DataFrame([gt for _, _, gt, _ in made])


def validation_tasks(ds, val_ids, cfg: TrainConfig) -> dict:
    """{editor: validation task} for a run's held-out images (decoded once, every editor of
    :func:`val_editors`), as the training loop validates on them."""
    held_out = load_small(ds, val_ids, cfg.image_side)
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


def check_device(device) -> str | None:
    """A device torch knows and this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: the
    default), checked before any work."""
    if device is None:
        return None
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda", "mps"):
        raise SettingError(f"--device {device!r}: use cpu, cuda or cuda:N (or leave it out: a GPU when present).")
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not torch.backends.mps.is_available()):
        raise SettingError(f"--device {device}: this machine has no such device; use cpu (or leave --device out).")
    return device


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
            raise SettingError(f"compat_with: the old model has {old_net.dim} dimensions, this one {cfg.dim}.")
    return net, old_net, Objective(cfg, n_classes).to(device)


def frozen_modules(net, n_blocks: int) -> list[nn.Module]:
    """The stem and first ``n_blocks`` stages of the backbone (kept at their ImageNet weights)."""
    if n_blocks <= 0:
        return []
    bb = net.backbone
    if not hasattr(bb, "blocks") or n_blocks > len(bb.blocks):
        raise SettingError(f"freeze_blocks={n_blocks}: this backbone has "
                         f"{len(getattr(bb, 'blocks', []))} stages that can be frozen.")
    return [bb.conv_stem, bb.bn1, *bb.blocks[:n_blocks]]


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
    if TrainConfig.from_json(state["config"]).to_json() != cfg.to_json():
        raise SettingError(f"{last} was written by a different configuration; use another out_dir "
                         "or delete it to start over.")
    if json.loads(state.get("input_weights", "{}")) != input_weights(cfg):
        raise SettingError(f"{last} started from other weights than {cfg.init_from or cfg.compat_with} holds now "
                         "(init_from / compat_with changed since); use another out_dir or delete it to start over.")
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if objective.arcface is not None:
        objective.arcface.load_state_dict(state["head"])
    if objective.bank is not None:
        objective.bank.emb, objective.bank.labels = state["memory_emb"], state["memory_labels"]
    return int(state["step"]), json.loads(state["history"])


def train_step(model, net, objective, opt, x1, x2, labels, cfg: TrainConfig, step: int, device,
               old_net=None) -> float:
    """One optimisation step on a batch of view pairs: forward both views, the objective's loss
    (plus the compatibility term when an old model is given), backward, update. Returns the loss.
    """
    model.train()
    fixed = list(net.backbone.modules()) if cfg.freeze_bn else \
        [m for f in frozen_modules(net, cfg.freeze_blocks) for m in f.modules()]
    for m in fixed:                           # frozen parts keep their BatchNorm statistics too
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    torch.manual_seed(_seed(cfg.seed, step) % (2 ** 31))
    z = model(torch.cat([x1, x2]).to(device))
    z1, z2 = z.chunk(2)
    loss = objective(z1, z2, labels.to(device))
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
    for i, (x1, x2, labels) in enumerate(_loader(run["images"], cfg, start, rank, run["world"])):
        if stop_after is not None and i >= stop_after:
            break
        step = start + i + 1
        running.append(train_step(run["model"], net, run["objective"], run["opt"], x1, x2, labels, cfg, step,
                                  device, run["old_net"]))
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
    cfg.check()
    rank, world = rank_world()
    device = _device(device, world)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train_ids, val_ids = split_training(ds, cfg)
    images = load_small(ds, train_ids, cfg.image_side)
    net, old_net, objective = _networks(cfg, len(images), device)
    opt = _optimizer(cfg, net, objective)
    start, history = 0, []
    if resume and (out_dir / "last.pt").exists():
        start, history = _resume(out_dir / "last.pt", cfg, net, opt, objective)
        if rank == 0 and progress:
            print(f"resuming from step {start} ({out_dir / 'last.pt'})")
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
    if rank == 0 and step == cfg.steps and (step > start or not (out_dir / "model.pt").exists()):
        # a finished run called again keeps its model.pt byte for byte (caches key on its content)
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


def score_methods(methods: dict, datasets: dict, k: int = 10) -> tuple[pd.DataFrame, dict]:
    """Each descriptor (``{label: method name}``, :data:`~isc_helpers.core.descriptors.METHODS`) on each
    dataset (``{label: Dataset}``), described once and cached (``descriptors.search_dataset``).
    Returns the table (a row per descriptor; columns ``µAP <dataset>``, ``recall@1 <dataset>``) and
    the predictions ``{(descriptor label, dataset label): DataFrame}`` for paired comparisons."""
    preds, rows = {}, {}
    for name, method in methods.items():
        for data_name, data in datasets.items():
            preds[name, data_name] = descriptors.search_dataset(data, method, k=k, progress=False)[0]
            ev = metrics.evaluate(preds[name, data_name], data.ground_truth())
            rows.setdefault(name, {}).update({f"µAP {data_name}": ev.uap, f"recall@1 {data_name}": ev.recall_at_1})
    table = pd.DataFrame(rows).T
    order = [f"{m} {d}" for m in ("µAP", "recall@1") for d in datasets]
    return table[order], preds


def evaluate_checkpoint(path, ds, k: int = 10, device=None) -> dict:
    """Score a trained descriptor on a dataset's queries: µAP, recall@P90, recall@1, images/s."""
    net, cfg, _ = load_descriptor(path, device)
    t0 = time.perf_counter()
    preds = search_with(net, ds, cfg.sizes[-1], k, device)
    seconds = time.perf_counter() - t0                 # extraction of every image, plus the search
    ev = metrics.evaluate(preds, ds.ground_truth())
    return {"uap": ev.uap, "recall_at_p90": ev.recall_at_p90, "recall_at_1": ev.recall_at_1,
            "images_per_second": (len(ds.query_ids) + len(ds.reference_ids)) / seconds}


