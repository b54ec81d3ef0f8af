"""Ensembles of descriptors and feature compatibility between models (lesson 08).

* :func:`ensemble`: the descriptor-track 2nd place's recipe: concatenate several models'
  descriptors of the same images, then PCA-whiten to 256 on training images.
* :func:`fit_compatible` / :class:`LinearMap`: a linear map from one model's descriptor
  space to another's, fitted on training images (compatibility training, which changes the
  model instead, is ``TrainConfig.compat_with`` in :mod:`isc_helpers.ideas.training`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.descriptors import l2_normalize
from ..core.formats import FormatError
from .normalize import PCA, as_matrix, background


def concatenate(*members) -> np.ndarray:
    """Concatenate the descriptors of several models for the same images, each member
    L2-normalised first so that each weighs the same; float32 [n, sum of dims]."""
    xs = [l2_normalize(as_matrix(m, f"member {i}")) for i, m in enumerate(members)]
    if len({len(x) for x in xs}) != 1:
        raise FormatError("normalization: ensemble members describe different numbers of images.")
    return np.hstack(xs).astype(np.float32)


def ensemble(q_members, r_members, train_members, dim: int = 256, whiten: bool = True):
    """The descriptor-track 2nd place's ensemble: concatenate members, PCA-whiten to ``dim``
    on training images. Returns (queries, references, the fitted :class:`PCA`)."""
    t = concatenate(*[background(m) for m in train_members])
    p = PCA.fit(t, dim=dim, whiten=whiten)
    return p.apply(concatenate(*q_members)), p.apply(concatenate(*r_members)), p


@dataclass
class LinearMap:
    """A linear map from one model's descriptor space to another's (then L2-normalised)."""
    weight: np.ndarray            # [d_source, d_target]
    bias: np.ndarray              # [d_target]

    def apply(self, x) -> np.ndarray:
        x = as_matrix(x, "source", self.weight.shape[0])
        return l2_normalize(x @ self.weight + self.bias)


def fit_compatible(source_train, target_train, ridge: float = 1e-2) -> LinearMap:
    """Make a new model's descriptors comparable with an old model's (feature compatibility):
    ridge regression from the new model's descriptors of the *training* images onto the old
    model's descriptors of the same images. References described by the old model then need
    no re-extraction: describe queries with the new model and :meth:`LinearMap.apply`."""
    s, t = background(source_train).astype(np.float64), background(target_train).astype(np.float64)
    if len(s) != len(t):
        raise FormatError("normalization: both models must describe the same training images, in the same order.")
    ms, mt = s.mean(0), t.mean(0)
    a = s - ms
    w = np.linalg.solve(a.T @ a + ridge * len(s) * np.eye(s.shape[1]), a.T @ (t - mt))
    return LinearMap(w.astype(np.float32), (mt - ms @ w).astype(np.float32))
