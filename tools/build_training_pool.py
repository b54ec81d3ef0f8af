#!/usr/bin/env python3
"""Add the training and transfer kinds to the embedded photo pool in data/pool/.

Kinds added (files under ``data/pool/<kind>/``, one manifest row each):

* ``train_photos``: real scene photos (buildings, landscapes, objects) for training only;
* ``textures``: photo-based surface textures (ground, walls, wood, stone...) for training only;
* ``transfer_photos``: ordinary photographs from *other* packages, reserved for the
  out-of-domain transfer benchmark (never for training).

Like tools/build_photo_pool.py this is run once by a maintainer; the result is committed.
Each Debian 12 package is fetched with ``apt-get download`` and unpacked with ``dpkg -x``
into the scratch folder (nothing is installed). The existing rows (photos, filler, overlays)
stay byte-identical and first in data/pool/manifest.csv; the rows of the added kinds are
rewritten after them, with a ``group`` column (tiles, recolours and resolution variants of
one source image share a group; a group never spans two kinds). The build is deterministic.

    python tools/build_training_pool.py --out data --work <scratch folder>
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import shutil
import struct
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_photo_pool import dhash, parse_dep5  # noqa: E402

def is_reserved(name: str) -> bool:
    """True for a package (or any path segment) reserved for the independent benchmark."""
    return hashlib.sha1(name.encode()).hexdigest() in RESERVED_SHA1


NEW_KINDS = ("train_photos", "textures", "transfer_photos")
OLD_KINDS = ("photos", "filler", "overlays")
MAX_SIDE = {"train_photos": 384, "textures": 384, "transfer_photos": 640}
JPEG_QUALITY = 85
MIN_LONG_SIDE = 128
MIN_STD = 6.0
MAX_PER_GROUP = {"train_photos": 1, "textures": 1, "transfer_photos": 2}   # variants kept per group
TEXTURE_CAP = 700          # texture files at most per package (a seeded sample): keeps data/ small
MIN_COLOURS = 60           # distinct colours (5 bits a channel) of a 64x64 thumbnail: fewer is clip-art
SEED = 2024
# The packages that feed the course's independent review benchmark must never be used. They are
# kept here as SHA-1 digests of their names (so the names appear nowhere in the project).
RESERVED_SHA1 = frozenset({
    "8ab76abe8d709a617ef4b5c168aaa89ac652c810",
    "1b63d203ef64b97d261f595b454307254bfb0070",
    "82e0207dfd9e814c9982668741c0bdf7316d8a62",
    "59522cade222d10dbc20322a59d128ed0e9d1bfc",
    "cd2bb77b8f2e484b36fc7150bc8143f53c7cc7a9",
    "e6e0b6887ce76402ab3f03e360bf4d3060d3bdfd",
    "87dcf942e3bc13438b4599f2e43e645af437f634",
    "e1418a03acb26314c31d7d98fbb19d92f268a241",
    "0a970189a6d182eb4e4fb48a3b65d3e80d342752",
})
# free licences accepted (prefix match on the licence short name of debian/copyright)
FREE = ("public-domain", "CC0", "CC-BY-", "GPL-2", "GPL-3", "LGPL", "BSD", "Expat", "MIT",
        "GFDL", "Free-Art")
MAP_NAME = re.compile(r"(_|-|\.)(n|nm|norm|normal|normals|s|sm|spec|specular|gloss|glow|g|bump|b|h|"
                      r"height|ao|mask|local|disp|displacement|lum|light|emissive|e|alpha)$|"
                      r"normal|_bump|_spec|_gloss|heightmap|lightmap", re.I)
UI_NAME = re.compile(r"logo|icon|button|menu|font|cursor|crosshair|hud|screenshot|preview|"
                     r"shot|thumb|splash|title|credits|arrow|(^|_)sign|(^|_)text|letter|number|digit|"
                     r"trim|shirt|pants|player|writing|fx|lamp|screen|glow|decal|graffiti|poster|"
                     r"sky|skybox|cloud|_up$|_dn$|_ft$|_bk$|_lf$|_rt$|caustic|particle|spark|flare",
                     re.I)


@dataclass
class Candidate:
    """One source image: where it lives in the package, how to read it, where it goes."""
    package: str
    orig: str                       # path inside the package (manifest original_path)
    key: str                        # path as named in debian/copyright
    kind: str
    read: Callable[[], bytes]
    tiles: int = 1                  # cut into this many tiles (side by side) before resizing


# ---------------------------------------------------------------- package sources
def fetch(pkgs, work: Path) -> dict[str, tuple[Path, str]]:
    """apt-get download + dpkg -x each package into work/x/<pkg>; {pkg: (root, version)}."""
    import subprocess
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download"] + missing, cwd=debs, check=True)
    out = {}
    for pkg in pkgs:
        deb = sorted(debs.glob(f"{pkg}_*.deb"))[-1]
        root = work / "x" / pkg
        if not root.exists():
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        ver = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
        out[pkg] = (root, ver)
    return out


def rcc_files(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every file in a Qt .rcc resource bundle (format versions 1-3)."""
    magic, ver, tree, dat, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource file")
    esize = 14 if ver == 1 else 22

    def name(off):
        n = struct.unpack(">H", data[names + off:names + off + 2])[0]
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        e = tree + i * esize
        noff, flags = struct.unpack(">IH", data[e:e + 6])
        path = f"{prefix}/{name(noff)}" if i else prefix
        if flags & 2:                                   # directory
            count, first = struct.unpack(">II", data[e + 6:e + 14])
            for c in range(first, first + count):
                yield from walk(c, path)
            return
        doff = struct.unpack(">I", data[e + 10:e + 14])[0]
        size = struct.unpack(">I", data[dat + doff:dat + doff + 4])[0]
        blob = data[dat + doff + 4:dat + doff + 4 + size]
        if flags & 1:                                   # zlib (qCompress)
            blob = zlib.decompress(blob[4:])
        if not flags & 4:                               # zstd: skipped
            yield path, blob
    yield from walk(0, "")


def largest_jpeg(data: bytes) -> bytes:
    """The largest embedded JPEG of a binary blob (e.g. an Enlightenment .edj file)."""
    best = b""
    for m in re.finditer(rb"\xff\xd8\xff", data):
        end = data.find(b"\xff\xd9", m.start())
        while end != -1:
            blob = data[m.start():end + 2]
            try:
                Image.open(io.BytesIO(blob)).verify()
                break
            except Exception:
                end = data.find(b"\xff\xd9", end + 2)
        if end != -1 and end + 2 - m.start() > len(best):
            best = data[m.start():end + 2]
    return best


def files_under(root: Path, sub: str, exts=(".jpg", ".jpeg", ".png", ".tga", ".dds")):
    base = root / sub
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in exts and p.is_file())


def reader(p: Path) -> Callable[[], bytes]:
    return lambda: p.read_bytes()


# ---------------------------------------------------------------- transfer sources
GCOMPRIS_DIRS = re.compile(r"activities/(categorization/resource/images/(fishes|monuments|others|"
                           r"renewable|tools)|explore_world_animals/resource/animals|"
                           r"explore_farm_animals/resource/animals|erase/resource|"
                           r"clickgame/resource/sea)")


def src_gcompris(root: Path) -> Iterator[Candidate]:
    for rcc in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        for path, blob in rcc_files(rcc.read_bytes()):
            if path.lower().endswith((".webp", ".jpg", ".png")) and GCOMPRIS_DIRS.search(path):
                key = path.replace("/gcompris/", "", 1)
                yield Candidate("gcompris-qt-data", f"{rcc.relative_to(root)}:{path}", key,
                                "transfer_photos", (lambda b=blob: b))


def src_krank(root: Path) -> Iterator[Candidate]:
    for p in files_under(root, "usr/share/games/krank/levels/unera-backgrounds", (".jpg",)):
        yield Candidate("krank", str(p.relative_to(root)), p.name, "transfer_photos", reader(p), tiles=2)


LXQT_PHOTOS = ("after-the-rain.jpg", "fog.jpg", "this-is-not-windows.jpg", "appleflower.png",
               "butterfly.png", "drop.png", "flowers.png")


def src_lxqt(root: Path) -> Iterator[Candidate]:
    for name in LXQT_PHOTOS:
        p = root / "usr/share/lxqt/wallpapers" / name
        yield Candidate("lxqt-themes", str(p.relative_to(root)), f"wallpapers/{name}",
                        "transfer_photos", reader(p))


E_PHOTOS = ("Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches",
            "Mountain", "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles",
            "Sunset-Clouds", "White-Flower", "Yellow-Flower", "Paper-Flower")


def src_enlightenment(root: Path) -> Iterator[Candidate]:
    for name in E_PHOTOS:
        p = root / "usr/share/enlightenment/data/backgrounds" / f"{name}.edj"
        yield Candidate("enlightenment-data", str(p.relative_to(root)), f"data/backgrounds/{name}.edj",
                        "transfer_photos", (lambda p=p: largest_jpeg(p.read_bytes())), tiles=2)


# ---------------------------------------------------------------- training sources
def pk3_candidates(pkg, root, pk3, key_prefix, kind_of) -> Iterator[Candidate]:
    z = zipfile.ZipFile(root / pk3)
    for n in sorted(z.namelist()):
        if n.lower().endswith((".jpg", ".png", ".tga")):
            kind = kind_of(n)
            if kind:
                yield Candidate(pkg, f"{pk3}:{n}", key_prefix + n, kind, (lambda n=n: z.read(n)))


UFO_PHOTO_DIRS = re.compile(r"tex_(pics|shop|vehicles|furniture)/")


def src_ufoai(root: Path) -> Iterator[Candidate]:
    yield from pk3_candidates("ufoai-textures", root, "usr/share/games/ufoai/base/0textures.pk3",
                              "base/", lambda n: "train_photos" if UFO_PHOTO_DIRS.search(n) else "textures")


def src_nexuiz(root: Path) -> Iterator[Candidate]:
    yield from pk3_candidates("nexuiz-textures", root, "usr/share/games/nexuiz/data/textures.pk3",
                              "", lambda n: "textures")


def tree_candidates(pkg, root, sub, key_of, kind_of) -> Iterator[Candidate]:
    for p in files_under(root, sub):
        rel = str(p.relative_to(root / sub))
        kind = kind_of(rel)
        if kind:
            yield Candidate(pkg, str(p.relative_to(root)), key_of(rel), kind, reader(p))


TORCS_PHOTOS = re.compile(r"(^|/)(background|house|h\d+f|tr-building|palaz|mase|garage|building|"
                          r"shop|facade|bat)[^/]*$", re.I)


def src_torcs(root):
    yield from tree_candidates("torcs-data", root, "usr/share/games/torcs", lambda r: "data/" + r,
                               lambda r: None if not r.startswith("tracks/") else
                               "train_photos" if TORCS_PHOTOS.search(r) else "textures")


def src_redeclipse(root):
    skip = re.compile(r"^(textures|crosshairs|skyboxes|maps|particles|caustics|misc|blendbrush|"
                      r"sounds|fonts|models|vegetation)/")
    yield from tree_candidates("redeclipse-data", root, "usr/share/games/redeclipse/data",
                               lambda r: "data/" + r, lambda r: None if skip.match(r) else "textures")


def src_scorched(root):
    yield from tree_candidates("scorched3d-data", root, "usr/share/games/scorched3d/data",
                               lambda r: "data/" + r,
                               lambda r: "textures" if "textures/landscape/" in r else None)


def src_megaglest(root):
    yield from tree_candidates("megaglest-data", root, "usr/share/games/megaglest/tilesets",
                               lambda r: "tilesets/" + r,
                               lambda r: "textures" if "/textures/" in r else None)


def src_etr(root):
    yield from tree_candidates("extremetuxracer-data", root, "usr/share/games/etr",
                               lambda r: "data/" + r,
                               lambda r: "textures" if r.startswith(("terrains/", "textures/")) else None)


def src_flightgear(root):
    yield from tree_candidates("flightgear-data-base", root, "usr/share/games/flightgear",
                               lambda r: r, lambda r: "textures" if r.startswith(
                                   ("Textures/Terrain/", "Textures/Terrain.winter/")) else None)


TRANSFER_SOURCES = {"gcompris-qt-data": src_gcompris, "krank": src_krank,
                    "lxqt-themes": src_lxqt, "enlightenment-data": src_enlightenment}
TRAIN_SOURCES = {"ufoai-textures": src_ufoai, "torcs-data": src_torcs,
                 "redeclipse-data": src_redeclipse, "nexuiz-textures": src_nexuiz,
                 "scorched3d-data": src_scorched, "megaglest-data": src_megaglest,
                 "extremetuxracer-data": src_etr, "flightgear-data-base": src_flightgear}


# ---------------------------------------------------------------- licences
FIXED_LICENCE = {   # packages whose debian/copyright is not machine-readable, or is overridden
    "krank": ("public-domain", "Slava Anishenko (krank images; debian/copyright: Public Domain)"),
    "nexuiz-textures": ("GPL-2+", "Alientrap, Lee Vermeulen and Nexuiz contributors"),
    "lxqt-themes": ("CC-BY-SA-3.0", "stefonarch (standreas@riseup.net), LXQt Project Team "
                    "(usr/share/lxqt/wallpapers/License)"),
}
NO_CATCH_ALL = {"gcompris-qt-data"}     # per-file stanza required (Files: * is the code licence)


def licence_of(pkg: str, paras, key: str) -> tuple[str, str] | None:
    """(licence, credit) for a file, or None when it is not clearly free."""
    if pkg in FIXED_LICENCE:
        return FIXED_LICENCE[pkg]
    found = None
    for ext in ("", ".jpg", ".png", ".jpeg", ".tga"):    # gcompris ships .webp of .jpg sources
        k = key if not ext else re.sub(r"\.\w+$", ext, key)
        for globs, cop, lic in paras:
            if any(re.fullmatch(_glob_re(g), k) for g in globs):
                found = (globs, cop, lic)
        if found and found[0] != ["*"]:
            break
    if not found or (pkg in NO_CATCH_ALL and found[0] == ["*"]):
        return None
    _, cop, lic = found
    if not lic.startswith(FREE) or "NC" in lic or "ND" in lic or "Mark" in lic:
        return None
    if lic.startswith("CC-BY") and not cop.strip():
        return None
    return lic, cop


_GLOBS: dict[str, str] = {}


def _glob_re(g: str) -> str:
    """DEP-5 glob to regex (* matches across '/')."""
    if g not in _GLOBS:
        _GLOBS[g] = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in g)
    return _GLOBS[g]


# ---------------------------------------------------------------- filters
def open_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def reject_reason(c: Candidate, im: Image.Image) -> str | None:
    """Why an image is not a usable photo or texture (None when it is)."""
    stem = Path(c.key).stem
    if MAP_NAME.search(stem):
        return "map_by_name"
    if UI_NAME.search(stem) and c.kind != "transfer_photos":
        return "ui_or_sky_by_name"
    if max(im.size) < MIN_LONG_SIDE:
        return "tiny"
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if (alpha < 250).mean() > 0.02:
            return "transparent"
    if max(im.size) > 4 * min(im.size) and c.kind != "transfer_photos":
        return "strip"
    rgb = np.asarray(im.convert("RGB").resize((64, 64)), dtype=np.float32)
    if rgb.mean(axis=2).std() < MIN_STD:
        return "flat"
    q = rgb.astype(np.int32) // 8
    colours = len(np.unique(q[..., 0] * 1024 + q[..., 1] * 32 + q[..., 2]))
    if colours < MIN_COLOURS and c.kind != "transfer_photos":
        return "few_colours_clipart"
    r, g, b = rgb[..., 0].mean(), rgb[..., 1].mean(), rgb[..., 2].mean()
    if b > 190 and 100 < r < 160 and 100 < g < 160 and c.kind != "transfer_photos":
        return "normal_map"
    return None


# ---------------------------------------------------------------- groups
def norm_stem(key: str) -> str:
    """Base name without variant suffixes (resolution, colour, _d/_diffuse...)."""
    s = Path(key).stem.lower()
    s = re.sub(r"(_|-)(d|diff|diffuse|col|color|colour|c|tex|hi|lo|hq|lq|small|big|large|\d+x\d+|"
               r"512|1024|2048|256|128|red|green|blue|yellow|orange|pink|white|black|grey|gray|"
               r"dark|light|bright)$", "", s)
    return s


class Grouper:
    """Assigns group ids: same package + normalised stem, or a near-duplicate thumbnail."""

    def __init__(self, capacity: int = 40000):
        self.hashes: list[int] = []
        self.thumbs = np.empty((capacity, 256), np.float32)
        self.groups: list[str] = []

    @staticmethod
    def thumb(im: Image.Image) -> np.ndarray:
        g = np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32).ravel()
        return (g - g.mean()) / (g.std() + 1e-6)          # colour- and contrast-invariant

    def match(self, im: Image.Image) -> str | None:
        if not self.groups:
            return None
        h, t = dhash(im), self.thumb(im)
        d = np.abs(self.thumbs[:len(self.groups)] - t).mean(axis=1)
        for i in np.flatnonzero(d < 0.25):
            if bin(h ^ self.hashes[i]).count("1") <= 8:
                return self.groups[i]
        return None

    def add(self, im: Image.Image, group: str) -> None:
        self.hashes.append(dhash(im))
        self.thumbs[len(self.groups)] = self.thumb(im)
        self.groups.append(group)


def tiles_of(im: Image.Image, n: int) -> list[Image.Image]:
    """n side-by-side tiles along the longer side of a full-resolution image."""
    if n == 1:
        return [im]
    w, h = im.size
    if w >= h:
        return [im.crop((w * i // n, 0, w * (i + 1) // n, h)) for i in range(n)]
    return [im.crop((0, h * i // n, w, h * (i + 1) // n)) for i in range(n)]


# ---------------------------------------------------------------- building
class Builder:
    """Filters, groups, resizes and writes the candidates; collects manifest rows and drop counts."""

    def __init__(self, out: Path, versions: dict[str, str]):
        self.out, self.versions = out, versions
        self.rows: list[dict] = []
        self.grouper = Grouper()
        self.group_kind: dict[str, str] = {}
        self.group_size: dict[str, int] = {}
        self.stem_group: dict[str, str] = {}
        self.used: set[str] = set()
        self.dropped: dict[str, dict[str, int]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.sha1s: set[str] = set()

    def count(self, pkg: str, kind: str) -> int:
        return self.counts.get((pkg, kind), 0)

    def drop(self, pkg: str, reason: str) -> None:
        d = self.dropped.setdefault(pkg, {})
        d[reason] = d.get(reason, 0) + 1

    def add(self, c: Candidate, paras) -> None:
        try:
            im = open_image(c.read())
        except Exception:
            return self.drop(c.package, "unreadable")
        reason = reject_reason(c, im)
        if reason:
            return self.drop(c.package, reason)
        lic = licence_of(c.package, paras, c.key)
        if lic is None:
            return self.drop(c.package, "licence_unclear_or_nonfree")
        im = im.convert("RGB")
        group, kind = self.group_for(c, im)
        if group is None:
            return self.drop(c.package, "near_duplicate_of_transfer")
        if self.group_size.get(group, 0) >= MAX_PER_GROUP[kind]:
            return self.drop(c.package, "variant_over_limit")
        self.group_kind[group] = kind
        self.group_size[group] = self.group_size.get(group, 0) + 1
        self.grouper.add(im, group)
        self.counts[c.package, kind] = self.count(c.package, kind) + 1
        for i, tile in enumerate(tiles_of(im, c.tiles)):
            self.write(c, kind, group, tile, i if c.tiles > 1 else None, lic)

    def group_for(self, c: Candidate, im: Image.Image) -> tuple[str | None, str]:
        """The group of an image and the kind it must go to (a group never spans kinds)."""
        key = f"{c.package}:{norm_stem(c.key)}"
        group = self.stem_group.get(key) or self.grouper.match(im)
        if group is None:
            group = key
            n = 1
            while group in self.group_kind:       # same stem already used by another image
                n += 1
                group = f"{key}~{n}"
            self.stem_group[key] = group
            return group, c.kind
        kind = self.group_kind[group]
        if (kind == "transfer_photos") != (c.kind == "transfer_photos"):
            return None, kind                     # never let training touch a transfer image
        return group, kind

    def write(self, c, kind, group, im, tile, lic) -> None:
        im = _downscale(im, MAX_SIDE[kind])
        short = {"gcompris-qt-data": "gcompris", "flightgear-data-base": "flightgear",
                 "enlightenment-data": "enlightenment"}.get(c.package, c.package.split("-")[0])
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(c.key).stem)[:60]
        name = f"{short}-{stem}" + (f"-t{tile}" if tile is not None else "")
        rel, n = f"{kind}/{name}.jpg", 1
        while rel in self.used:
            n += 1
            rel = f"{kind}/{name}-{n}.jpg"
        self.used.add(rel)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
        data = buf.getvalue()
        sha1 = hashlib.sha1(data).hexdigest()
        if sha1 in self.sha1s:                    # an exact copy (e.g. the same photo twice)
            self.used.discard(rel)
            return self.drop(c.package, "exact_duplicate")
        self.sha1s.add(sha1)
        (self.out / rel).write_bytes(data)
        self.rows.append(dict(file=rel, kind=kind, source_package=c.package,
                              package_version=self.versions[c.package], original_path=c.orig,
                              licence=lic[0], credit=" ".join(lic[1].split()), width=im.size[0],
                              height=im.size[1], sha1=sha1, group=group))


def _downscale(im: Image.Image, max_side: int) -> Image.Image:
    w, h = im.size
    s = max_side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return im


def read_paras(root: Path, pkg: str):
    f = root / "usr/share/doc" / pkg / "copyright"
    return parse_dep5(f.read_text(errors="ignore")) if f.exists() else []


# ---------------------------------------------------------------- manifest, stats, credits
def write_manifest(pool: Path, new_rows: list[dict]) -> None:
    """Old kinds first with their values unchanged (group = file without extension), then the rest."""
    with open(pool / "manifest.csv", newline="") as f:
        old = [r for r in csv.DictReader(f) if r["kind"] in OLD_KINDS]
    fields = ["file", "kind", "source_package", "package_version", "original_path", "licence",
              "credit", "width", "height", "sha1", "group"]
    for r in old:
        r["group"] = r["file"].rsplit(".", 1)[0]
    with open(pool / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(old + new_rows)


def write_stats(pool: Path, rows: list[dict], dropped: dict) -> dict:
    stats = json.loads((pool / "stats.json").read_text())
    for kind in NEW_KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        stats[kind] = len(rs)
        stats.setdefault("groups", {})[kind] = len({r["group"] for r in rs})
    stats["dropped_training_pool"] = dropped
    (pool / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=False) + "\n")
    return stats


CREDITS_MARK = "## Training and transfer kinds"


def write_credits(path: Path, rows: list[dict]) -> None:
    """Append (or replace) the section on the kinds added by this script in data/CREDITS.md."""
    text = path.read_text().split("\n" + CREDITS_MARK)[0].rstrip("\n")
    lines = ["", CREDITS_MARK, "",
             "Added by `tools/build_training_pool.py`: `train_photos` and `textures` (training only)",
             "and `transfer_photos` (transfer benchmark only, from packages not used for training).",
             "Per-file licence and credit in `data/pool/manifest.csv` (from each package's",
             "`debian/copyright`; `original_path` of gcompris files is `<rcc file>:<path in the rcc>`,",
             "of pk3 files `<pk3 file>:<path in the zip>`).", ""]
    by_pkg: dict[tuple, list] = {}
    for r in rows:
        by_pkg.setdefault((r["source_package"], r["package_version"]), []).append(r)
    for (pkg, ver), rs in sorted(by_pkg.items()):
        kinds = sorted({r["kind"] for r in rs})
        lines += [f"### {pkg} {ver}", "",
                  f"{len(rs)} files, {len({r['group'] for r in rs})} groups, kind: {', '.join(kinds)}.", "",
                  "| licence | files | credits (examples) |", "|---|---|---|"]
        lic: dict[str, list] = {}
        for r in rs:
            lic.setdefault(r["licence"], []).append(r)
        for name, lrs in sorted(lic.items()):
            creds = sorted({r["credit"] for r in lrs if r["credit"]})
            shown = "; ".join(c.replace("|", "/")[:70] for c in creds[:5]) + (" ..." if len(creds) > 5 else "")
            lines.append(f"| {name} | {len(lrs)} | {shown} |")
        lines.append("")
    path.write_text(text + "\n" + "\n".join(lines))


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "isc-pool-work",
                    help="scratch folder for the .deb files (default: the system temporary folder)")
    ap.add_argument("--only", nargs="*", help="debug: build only these packages")
    args = ap.parse_args(argv)
    sources = {**TRANSFER_SOURCES, **TRAIN_SOURCES}       # transfer first: training avoids its images
    if args.only:
        sources = {k: v for k, v in sources.items() if k in args.only}
    assert not any(is_reserved(s) for s in sources), "a reserved package is listed"
    pkgs = fetch(list(sources), args.work)
    pool = args.out / "pool"
    for kind in NEW_KINDS:
        shutil.rmtree(pool / kind, ignore_errors=True)
        (pool / kind).mkdir(parents=True)
    b = Builder(pool, {p: v for p, (_, v) in pkgs.items()})
    for pkg, source in sources.items():
        root = pkgs[pkg][0]
        paras = read_paras(root, pkg)
        cands = list(source(root))
        if pkg in TRAIN_SOURCES:              # a seeded sample, capped: varied and small
            cands = [cands[i] for i in np.random.RandomState(SEED).permutation(len(cands))]
        for cand in cands:
            if cand.kind == "textures" and b.count(pkg, "textures") >= TEXTURE_CAP:
                b.drop(pkg, "over_package_cap")
                continue
            b.add(cand, paras)
        print(pkg, sum(r["source_package"] == pkg for r in b.rows), b.dropped.get(pkg, {}), flush=True)
    write_manifest(pool, b.rows)
    stats = write_stats(pool, b.rows, b.dropped)
    write_credits(args.out / "CREDITS.md", b.rows)
    print(json.dumps({k: stats[k] for k in NEW_KINDS}), json.dumps(stats["groups"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
