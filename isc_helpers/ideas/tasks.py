"""A copy-detection task as one typed object, and the two tasks every lesson from 04 on uses.

A :class:`Task` holds what a post-processing, calibration or verification step needs:
query and reference descriptors with their ids, the background (training-image
descriptors) and the ground truth. :func:`tuning_task` is built only from a dataset's
*training* images (parameters are chosen on it); :func:`evaluation_task` is the dataset's
own queries and references (results are reported on it, nothing is chosen on it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import descriptors
from ..datasets import tuning as tuning_set
from ..datasets.dataset import Dataset
from ..core.descriptors import Extracted


@dataclass
class Task:
    """Descriptors of one copy-detection task: queries ``q`` and references ``r`` (float32 rows,
    ids alongside), the ``train`` background (:class:`~isc_helpers.core.descriptors.Extracted`
    training descriptors) and the ground truth ``gt``."""
    q: np.ndarray
    query_ids: list[str]
    r: np.ndarray
    reference_ids: list[str]
    train: Extracted
    gt: pd.DataFrame


def tuning_task(ds: Dataset, method: str, tuning: Dataset | None = None, progress: bool = True) -> Task:
    """The tuning task (:func:`~isc_helpers.datasets.tuning.build_tuning_set`, made from ``ds``'s
    training images) described with ``method``.

    Its references and background are byte-identical copies of training images, so their
    descriptors are looked up in ``ds``'s cached training descriptors; only its edited
    queries are extracted.
    """
    tu = tuning or tuning_set.build_tuning_set(ds, progress=progress)
    train = descriptors.for_dataset(ds, method, "train", progress=progress)
    row = {t: i for i, t in enumerate(train.ids)}
    src = pd.read_csv(Path(tu.root) / "tuning_sources.csv", dtype=str).set_index("image_id").train_id
    q = descriptors.for_dataset(tu, method, "query", progress=progress)
    r = train.x[[row[src[i]] for i in tu.reference_ids]]
    t = train.x[[row[src[i]] for i in tu.train_ids]]
    return Task(q.x, q.ids, r, list(tu.reference_ids), Extracted(list(tu.train_ids), t, 0.0), tu.ground_truth())


def evaluation_task(ds: Dataset, method: str, progress: bool = True) -> Task:
    """The same for a dataset's own queries and references, background = its training images."""
    q = descriptors.for_dataset(ds, method, "query", progress=progress)
    r = descriptors.for_dataset(ds, method, "reference", progress=progress)
    t = descriptors.for_dataset(ds, method, "train", progress=progress)
    return Task(q.x, q.ids, r.x, r.ids, t, ds.ground_truth())
