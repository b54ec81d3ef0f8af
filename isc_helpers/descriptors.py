"""Global image descriptors (lesson 00 starts with the simplest; lesson 02 adds the baselines).

Every extractor maps a list of image paths to a float32 matrix [n, d], one row per
image, L2-normalised so that inner product = cosine similarity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .data import load_image


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def tiny_thumbnail(paths: Sequence[str | Path], side: int = 16, progress: bool = False) -> np.ndarray:
    """Grey thumbnail of side x side pixels, mean-centred and L2-normalised (d = side**2)."""
    from PIL import Image
    from tqdm.auto import tqdm
    out = np.empty((len(paths), side * side), np.float32)
    for i, p in enumerate(tqdm(paths, desc="thumbnails", disable=not progress)):
        g = np.asarray(load_image(p).convert("L").resize((side, side), Image.BILINEAR), np.float32)
        out[i] = (g - g.mean()).ravel()
    return l2_normalize(out)
