"""One setting decides sizes everywhere: the course profile (lesson 00).

The profile is read from the ``ISC_PROFILE`` environment variable: ``test`` (tiny, for the test
suite), ``course`` (default, each lesson minutes on a laptop CPU) or ``full`` (real DISC21,
plugged in with ``ISC_DISC21_DIR``). Every size lives here: mini-DISC's, the transfer set's, the
training pool's, the training recipe's and the lessons' own (:attr:`Profile.lesson`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .errors import SettingError

ENV_VAR = "ISC_PROFILE"


@dataclass(frozen=True)
class TransferSize:
    """How the transfer set of a profile is made: shares of the photo groups, and counts."""
    max_groups: int | None         # photo groups used (None: all)
    reference_share: float         # of the groups: references (the rest: non-copy photos, training)
    nonmatch_share: float
    copied_share: float            # of the references: how many get an edited copy as a query
    queries_per_nonmatch: int
    max_hard_negatives: int        # edited other members of a reference's group (same scene, no copy)
    n_reference_distractors: int   # clip-art padding of the references
    n_train_padding: int           # generic training images added to its own (as DISC21's training set)
    max_side: int
    seed: int = 4242


@dataclass(frozen=True)
class Profile:
    """Sizes of the datasets the course builds and of the work each lesson does."""
    name: str
    n_reference_photos: int      # pool photos that become references
    n_copied: int                # of those, how many get an edited query (copies)
    n_nonmatch_photos: int       # photos used only for non-copy queries
    queries_per_nonmatch: int    # edited queries made from each such photo
    n_reference_distractors: int  # clip-art padding of the reference set
    n_train_photos: int          # photos kept for training (never queries/references)
    n_train_filler: int          # filler images added to the training set
    max_side: int                # longer side of stored mini-DISC images
    seed: int = 2021
    uses_disc21: bool = False
    transfer: TransferSize | None = None          # the transfer set (None: none, real DISC21)
    training_pool_groups: int | None = None       # groups of the training-only pool taken (None: all)
    training: dict = field(default_factory=dict)  # the training recipe's sizes (TrainConfig fields)
    overlay_detector: dict = field(default_factory=lambda: dict(n_examples=800, steps=400))  # the pipelines' detector
    lesson: dict = field(default_factory=dict)    # sizes of the lessons' own experiments, by name

    def describe(self) -> str:
        if self.uses_disc21:
            return f"profile '{self.name}': real DISC21 from ${'ISC_DISC21_DIR'}"
        nq = self.n_copied + self.n_nonmatch_photos * self.queries_per_nonmatch
        nr = self.n_reference_photos + self.n_reference_distractors
        nt = self.n_train_photos + self.n_train_filler
        return (f"profile '{self.name}': mini-DISC with {nq} queries "
                f"({self.n_copied} copies), {nr} references, {nt} training images")

    def as_dict(self) -> dict:
        """The mini-DISC sizes (what its build depends on)."""
        d = asdict(self)
        for key in ("transfer", "training_pool_groups", "training", "overlay_detector", "lesson"):
            d.pop(key)
        return d


PROFILES = {
    "test": Profile("test", n_reference_photos=60, n_copied=40, n_nonmatch_photos=30,
                    queries_per_nonmatch=2, n_reference_distractors=140,
                    n_train_photos=60, n_train_filler=140, max_side=320,
                    transfer=TransferSize(60, 0.5, 0.3, 0.8, 1, 10, 60, 100, 320),
                    training_pool_groups=150,
                    training=dict(steps=60, batch_size=16, sizes=(96, 96, 96), val_every=30, ckpt_every=30, dim=64),
                    overlay_detector=dict(n_examples=200, steps=100),
                    lesson=dict(folder=dict(per_kind=3, lookalike_pairs=8, others=24, later_new=2, later_copies=2),
                                compat_steps=10, scale_sizes=(0, 10_000, 50_000))),
    "course": Profile("course", n_reference_photos=150, n_copied=120, n_nonmatch_photos=90,
                      queries_per_nonmatch=3, n_reference_distractors=850,
                      n_train_photos=107, n_train_filler=1150, max_side=512,
                      transfer=TransferSize(None, 0.5, 0.3, 0.8, 2, 60, 400, 400, 512),
                      training_pool_groups=None,
                      training=dict(steps=240, batch_size=32, sizes=(112, 128, 160), val_every=40, ckpt_every=40),
                      lesson=dict(folder=dict(per_kind=5, lookalike_pairs=20, others=60, later_new=3, later_copies=3),
                                  compat_steps=40, scale_sizes=(0, 10_000, 100_000, 1_000_000))),
    "full": Profile("full", n_reference_photos=0, n_copied=0, n_nonmatch_photos=0,
                    queries_per_nonmatch=0, n_reference_distractors=0, n_train_photos=0,
                    n_train_filler=0, max_side=0, uses_disc21=True,
                    training=dict(steps=20_000, batch_size=64, sizes=(160, 224, 288), val_every=1000, ckpt_every=500,
                                  n_val=2000, train_on="all"),
                    lesson=dict(compat_steps=40, scale_sizes=(0, 10_000, 100_000))),
}
DEFAULT = "course"


def get_profile(name: str | None = None) -> Profile:
    """Return the active profile: ``name`` if given, else ``$ISC_PROFILE``, else 'course'."""
    name = name or os.environ.get(ENV_VAR, "").strip() or DEFAULT
    try:
        return PROFILES[name]
    except KeyError:
        raise SettingError(f"Unknown profile {name!r} (from {ENV_VAR} or argument); "
                           f"choose one of {sorted(PROFILES)}.") from None
