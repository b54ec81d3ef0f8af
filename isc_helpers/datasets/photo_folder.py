"""A photo folder whose copies we know (lesson 09, and the calibration benchmark of find-copies).

:func:`build_photo_folder` writes an ordinary-looking folder of photos (subfolders, camera and
messenger file names, PNG and JPEG, an EXIF-rotated copy) from pool images: originals, copies of
some of them planted with one of :data:`KINDS` of edits, *lookalikes* (two non-overlapping parts of
one photo: the same scene, not a copy), other photos, and a later batch (new photos and copies of
photos already there) for a collection that grows. The truth goes beside the folder, never inside.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance

from ..core.errors import SettingError
from ..core.images import load_image
from ..core.profile import get_profile
from . import augment, transfer_edits
from .dataset import load_pool
from .edits import EditAssets

KINDS = ("crop", "resize + JPEG", "colour", "EXIF rotation", "screenshot", "pasted on a photo",
         "edit chain (2nd generator)", "edit chain (AugLy)")
ORIENTATION = 0x0112          # the EXIF tag a phone writes instead of turning the pixels
PLACES = ("holiday", "holiday/beach", "family/2019", "family/2021", "phone/DCIM")
WORDS = ("portrait", "garden", "birthday", "grandma", "kitchen", "market", "harbour", "snow",
         "picnic", "school", "wedding", "hike", "museum", "cat", "bikes", "sunset")
NAMES = {"camera": "IMG_{n:04d}.jpg", "dslr": "DSC_{n:04d}.JPG", "word": "{word} {small}.png",
         "whatsapp": "IMG-2021{month:02d}{day:02d}-WA{n:04d}.jpeg", "download": "image ({small}).jpg",
         "screenshot": "Screenshot_2021{month:02d}{day:02d}-{n:06d}.png"}


def _screenshot(im: Image.Image) -> Image.Image:
    """The photo on a phone screen, with status bar, caption and likes."""
    w, h = im.size
    height = max(2 * w, h + 160)
    top = (height - h) // 2
    shot = Image.new("RGB", (w, height), (246, 246, 246))
    shot.paste(im, (0, top))
    d = ImageDraw.Draw(shot)
    d.rectangle((0, 0, w, 22), fill=(25, 25, 25))
    d.text((8, 5), "12:41      4G  87%", fill="white")
    d.text((10, top - 24), "Look at this!", fill="black")
    d.text((10, top + h + 8), "214 likes   reply", fill=(110, 110, 110))
    return shot


def _pasted(im: Image.Image, background: Image.Image, rng) -> Image.Image:
    """The photo shrunk to half the other photo's size and pasted on it."""
    w, h = im.size
    bg = background.resize((640, round(640 * background.height / background.width)))
    s = 0.5 * min(bg.width / w, bg.height / h)
    small = im.resize((max(1, round(w * s)), max(1, round(h * s))))
    x, y = rng.randint(0, bg.width - small.width + 1), rng.randint(0, bg.height - small.height + 1)
    bg.paste(small, (int(x), int(y)))
    return bg


def plant_copy(kind: str, im: Image.Image, rng, background: Image.Image | None, assets: EditAssets):
    """An edited copy of ``im``: (image, EXIF bytes to save with it or None, JPEG quality)."""
    w, h = im.size
    if kind == "crop":                                        # keep 50-75% of each side
        fw, fh = rng.uniform(0.5, 0.75, 2)
        x, y = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
        return im.crop((int(x), int(y), int(x + fw * w), int(y + fh * h))), None, 90
    if kind == "resize + JPEG":                               # half size, quality 20: a messenger's copy
        return im.resize((w // 2, h // 2), Image.BILINEAR), None, 20
    if kind == "colour":                                      # a warm "vintage" filter
        faded = ImageEnhance.Contrast(ImageEnhance.Color(im).enhance(0.5)).enhance(1.2)
        return Image.blend(faded, Image.new("RGB", im.size, (255, 170, 90)), 0.2), None, 90
    if kind == "EXIF rotation":                               # pixels stored sideways + "turn right to view"
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        return im.transpose(Image.Transpose.ROTATE_90), exif.tobytes(), 92
    if kind == "screenshot":
        return _screenshot(im), None, 90
    if kind == "pasted on a photo":
        return _pasted(im, background, rng), None, 90
    seed = int(rng.randint(2 ** 31))
    if kind == "edit chain (2nd generator)":                  # the transfer set's edits, up to 4 in a chain
        return transfer_edits.random_edit(im, seed=seed, assets=assets).image, None, 90
    if kind == "edit chain (AugLy)":                          # mini-DISC's edits, up to 3 in a chain
        return augment.random_edit(im, seed=seed, assets=assets).image, None, 90
    raise SettingError(f"unknown kind {kind!r}; choose one of {KINDS}")


def namer(rng):
    """A function giving ordinary, never repeated file names: IMG_0412.jpg, garden 5.png, ..."""
    used = set()

    def name(place, style):
        while True:
            n = int(rng.randint(1, 10000))
            image_id = f"{place}/" + NAMES[style].format(n=n, word=WORDS[n % len(WORDS)], small=n % 97,
                                                         month=1 + n % 12, day=1 + n % 28)
            if image_id.lower() not in used:
                used.add(image_id.lower())
                return image_id
    return name


def save(folder: Path, image_id: str, im: Image.Image, exif=None, quality: int = 92) -> None:
    path = folder / image_id
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        im.save(path)
    else:
        im.save(path, "JPEG", quality=quality, **({"exif": exif} if exif else {}))


def _sources(size: dict, rng, kinds: tuple, exclude=frozenset()) -> tuple[list, list, list, list, list]:
    """(originals, lookalike halves, other photos, later new photos, backgrounds) from the pool."""
    pool = load_pool()
    groups = [g for kind in kinds for g in pool.groups(kind).values()
              if not any(str(p.relative_to(pool.root)) in exclude for p in g)]
    singles = [g[0] for g in groups if len(g) == 1]
    singles = [singles[i] for i in rng.permutation(len(singles))]
    halves = [g for g in groups if len(g) == 2]
    halves = [halves[i] for i in rng.permutation(len(halves))[:size["lookalike_pairs"]]]
    n_orig = size["per_kind"] * len(KINDS)
    cut = np.cumsum([n_orig, size["others"], size["later_new"]])
    if cut[-1] + 10 > len(singles):
        raise SettingError(f"the pool has {len(singles)} single photos of {kinds}; this folder needs {cut[-1] + 10}.")
    return singles[:cut[0]], halves, singles[cut[0]:cut[1]], singles[cut[1]:cut[2]], singles[cut[2]:]


def _plant(tmp: Path, originals, elsewhere, name, rng, assets) -> list[dict]:
    planted = []
    for i, src in enumerate(originals):
        kind, im = KINDS[i % len(KINDS)], load_image(src)
        original = name(PLACES[i % len(PLACES)], ("camera", "dslr", "word")[i % 3])
        save(tmp / "photos", original, im)
        copy, exif, quality = plant_copy(kind, im, rng, load_image(elsewhere[i % len(elsewhere)]), assets)
        where = ("phone/Screenshots", "screenshot") if kind == "screenshot" else \
            [("phone/WhatsApp Images", "whatsapp"), ("downloads", "download"), ("shared/from Anna", "camera")][i % 3]
        copy_id = name(*where)
        save(tmp / "photos", copy_id, copy, exif, quality)
        planted.append({"original": original, "copy": copy_id, "kind": kind})
    return planted


def _later(tmp: Path, later_new, others: list[str], n_copies: int, name, rng, assets) -> list[dict]:
    later = []
    for src in later_new:                                     # the later batch: new photos ...
        later.append({"image": name("2022", "camera"), "copy_of": ""})
        save(tmp / "later", later[-1]["image"], load_image(src))
    for j in range(n_copies):                                 # ... and copies of photos already there
        kind = ("crop", "colour", "resize + JPEG")[j % 3]
        copy, exif, quality = plant_copy(kind, load_image(tmp / "photos" / others[j]), rng, None, assets)
        later.append({"image": name("2022", "whatsapp"), "copy_of": others[j]})
        save(tmp / "later", later[-1]["image"], copy, exif, quality)
    return later


def build_photo_folder(work, size: dict | None = None, seed: int = 9, kinds: tuple = ("transfer_photos",),
                       exclude=frozenset()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The folder ``work/photos``, a later batch ``work/later`` and their truth in ``work/truth``
    (built once; a second call reads it back): (planted copies, lookalike pairs, later batch).
    ``size``: per_kind (originals per kind of copy), lookalike_pairs, others, later_new,
    later_copies; default the profile's (:attr:`~isc_helpers.core.profile.Profile.lesson`).
    ``kinds``: the pool kinds the photos come from; ``exclude``: pool files (relative to the pool)
    never used."""
    work, truth = Path(work), Path(work) / "truth"
    if (truth / "planted.csv").is_file():                     # written last: the build is complete
        return tuple(pd.read_csv(truth / f"{t}.csv", keep_default_na=False) for t in ("planted", "lookalikes", "later"))
    size = size or get_profile().lesson["folder"]
    rng = np.random.RandomState(seed)
    originals, halves, others, later_new, elsewhere = _sources(size, rng, kinds, exclude)
    assets = EditAssets(overlays=load_pool().files("overlays"), backgrounds=elsewhere)
    name, tmp = namer(rng), work / "build.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    planted = _plant(tmp, originals, elsewhere, name, rng, assets)
    lookalikes = []
    for j, (left, right) in enumerate(halves):              # two halves of one photo: same scene, no copy
        a, b = name(PLACES[j % len(PLACES)], "camera"), name(PLACES[j % len(PLACES)], "camera")
        save(tmp / "photos", a, load_image(left))
        save(tmp / "photos", b, load_image(right))
        lookalikes.append({"a": a, "b": b})
    other_ids = []
    for j, src in enumerate(others):
        other_ids.append(name(PLACES[j % len(PLACES)], ("camera", "camera", "dslr", "word")[j % 4]))
        save(tmp / "photos", other_ids[-1], load_image(src))
    later = _later(tmp, later_new, other_ids, size["later_copies"], name, rng, assets)
    for folder in ("photos", "later"):
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / folder, ignore_errors=True)
        (tmp / folder).rename(work / folder)
    shutil.rmtree(tmp)
    truth.mkdir(parents=True, exist_ok=True)
    tables = {"later": pd.DataFrame(later, columns=["image", "copy_of"]),
              "lookalikes": pd.DataFrame(lookalikes, columns=["a", "b"]),
              "planted": pd.DataFrame(planted, columns=["original", "copy", "kind"])}
    for t, table in tables.items():                         # planted.csv last: it marks the build complete
        table.to_csv(truth / f"{t}.csv", index=False)
    return tables["planted"], tables["lookalikes"], tables["later"]
