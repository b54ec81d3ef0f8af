"""One setting decides sizes everywhere: the course profile (lesson 00).

The profile is read from the ``ISC_PROFILE`` environment variable:
``test`` (tiny, for the test suite), ``course`` (default, each lesson minutes on a
laptop CPU) or ``full`` (real DISC21, plugged in with ``ISC_DISC21_DIR``).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

ENV_VAR = "ISC_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes of the mini-DISC build and of the work each lesson does."""
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

    def describe(self) -> str:
        if self.uses_disc21:
            return f"profile '{self.name}': real DISC21 from ${'ISC_DISC21_DIR'}"
        nq = self.n_copied + self.n_nonmatch_photos * self.queries_per_nonmatch
        nr = self.n_reference_photos + self.n_reference_distractors
        nt = self.n_train_photos + self.n_train_filler
        return (f"profile '{self.name}': mini-DISC with {nq} queries "
                f"({self.n_copied} copies), {nr} references, {nt} training images")

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "test": Profile("test", n_reference_photos=60, n_copied=40, n_nonmatch_photos=30,
                    queries_per_nonmatch=2, n_reference_distractors=140,
                    n_train_photos=60, n_train_filler=140, max_side=320),
    "course": Profile("course", n_reference_photos=150, n_copied=120, n_nonmatch_photos=90,
                      queries_per_nonmatch=3, n_reference_distractors=850,
                      n_train_photos=107, n_train_filler=1150, max_side=512),
    "full": Profile("full", n_reference_photos=0, n_copied=0, n_nonmatch_photos=0,
                    queries_per_nonmatch=0, n_reference_distractors=0, n_train_photos=0,
                    n_train_filler=0, max_side=0, uses_disc21=True),
}
DEFAULT = "course"


def get_profile(name: str | None = None) -> Profile:
    """Return the active profile: ``name`` if given, else ``$ISC_PROFILE``, else 'course'."""
    name = name or os.environ.get(ENV_VAR, "").strip() or DEFAULT
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile {name!r} (from {ENV_VAR} or argument); "
                         f"choose one of {sorted(PROFILES)}.") from None
