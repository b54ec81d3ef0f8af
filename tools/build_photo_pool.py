#!/usr/bin/env python3
"""Rebuild the embedded photo pool in data/ from Debian packages and scikit-image.

Run once by a maintainer (the result, data/, is committed); the course itself
never runs this. Nothing is installed system-wide: each .deb is fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into a scratch folder.

On a Debian 12 machine the packages come from the system's own sources. On a
newer Debian (13 has no ``endless-sky-data`` or ``scratch``) pass
``--bookworm-sources``: a private sources list and apt state folder inside the
scratch folder point apt at Debian 12 only for this download; the system's apt
configuration is left untouched.

    python tools/build_photo_pool.py --out data --work <scratch folder>
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import inspect
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {
    "endless-sky-data": "usr/share/games/endless-sky",
    "scratch": "usr/share/scratch",
    "tuxpaint-stamps-default": "usr/share/tuxpaint/stamps",
    "openclipart-png": "usr/share/openclipart/png",
    "stellarium-data": "usr/share/stellarium",
}
PHOTO_MAX = 640     # longer side of a photo
FILLER_MAX = 192    # longer side of clip-art and nebula filler
STAMP_MAX = 192     # longer side of an overlay cut-out
N_CLIPART = 1500    # clip-art images kept (of about 8,000)
N_STAMPS = 240      # tuxpaint cut-outs kept
SEED = 2021
# scikit-image sample photos whose docstring states a clear licence (natural images only;
# immunohistochemistry, moon, page and stereo_motorcycle are left out: no licence stated).
SKIMAGE_PHOTOS = ["astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "retina", "rocket", "text"]
SKIMAGE_FILES = {"chelsea": "chelsea.png", "immunohistochemistry": "ihc.png", "stereo_motorcycle": "motorcycle_left.png", "hubble_deep_field": "hubble_deep_field.jpg",
                 "retina": "retina.jpg", "rocket": "rocket.jpg"}


# ---------------------------------------------------------------- fetching
def fetch_packages(work: Path, bookworm_sources: bool) -> dict[str, tuple[Path, str]]:
    """Download and unpack each package; returns {package: (root, version)}."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    apt = ["apt-get"]
    if bookworm_sources:
        etc = work / "apt-etc"
        lists = work / "apt-lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        src = etc / "sources.list"
        src.write_text("deb http://deb.debian.org/debian bookworm main\n")
        opts = ["-o", f"Dir::Etc::SourceList={src}", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={lists}"]
        apt += opts
        subprocess.run(apt + ["update"], check=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(apt + ["download"] + missing, cwd=debs, check=True)
    out = {}
    for pkg in PACKAGES:
        deb = sorted(debs.glob(f"{pkg}_*.deb"))[-1]
        root = work / "x" / pkg
        if not root.exists():
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        out[pkg] = (root, version)
    return out


# ---------------------------------------------------------------- licences
def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """Parse a machine-readable debian/copyright into (globs, copyright, licence) paragraphs."""
    paras = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
            elif key and line.strip():
                fields[key] += "\n" + line.strip()
        if "files" in fields:
            globs = fields["files"].split()
            lic = fields.get("license", "").splitlines()[0] if fields.get("license") else ""
            cop = " ".join(fields.get("copyright", "").split())
            paras.append((globs, cop, lic))
    return paras


def dep5_lookup(paras, relpath: str) -> tuple[str, str]:
    """Return (copyright, licence) of the last paragraph whose glob matches (DEP-5 rule)."""
    found = ("", "")
    for globs, cop, lic in paras:
        if any(fnmatch.fnmatchcase(relpath, g) or relpath == g for g in globs):
            found = (cop, lic)
    return found


def stellarium_credits(root: Path) -> dict[str, str]:
    text = (root / "usr/share/stellarium/nebulae/default/textures.json").read_text(errors="ignore")
    credits = {}
    for m in re.finditer(r'"imageCredits"\s*:\s*\{([^}]*)\}\s*,\s*"imageUrl"\s*:\s*"([^"]+)"', text):
        short = re.search(r'"short"\s*:\s*"([^"]*)"', m.group(1), re.I)
        credits[m.group(2)] = short.group(1) if short else ""
    return credits


# ---------------------------------------------------------------- images
def load_rgb(path_or_file, background=(255, 255, 255)) -> Image.Image:
    im = Image.open(path_or_file)
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, background + (255,))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def downscale(im: Image.Image, max_side: int) -> Image.Image:
    w, h = im.size
    s = max_side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return im


def dhash(im: Image.Image) -> int:
    """64-bit difference hash of the grey image (for near-duplicate removal)."""
    g = np.asarray(im.convert("L").resize((9, 8), Image.LANCZOS), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def is_near_duplicate(h: int, thumb: np.ndarray, seen: list[tuple[int, np.ndarray]]) -> bool:
    for h2, t2 in seen:
        if bin(h ^ h2).count("1") <= 6 and np.abs(thumb - t2).mean() < 12:
            return True
    return False


def thumb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR), dtype=np.float32)


def usable(im: Image.Image, min_side: int) -> bool:
    a = np.asarray(im.convert("L"), dtype=np.float32)
    return min(im.size) >= min_side and a.std() > 8


def write_credits(rows: list[dict], path: Path) -> None:
    """Write data/CREDITS.md: licence and credit per source, with counts (per-file detail in the manifest)."""
    import collections
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["source_package"], r["package_version"], r["licence"])].append(r)
    lines = ["# Credits and licences of the photo pool", "",
             "Every file in `data/pool/` comes from a Debian package or from scikit-image, downscaled",
             "and re-encoded by `tools/build_photo_pool.py`. `data/pool/manifest.csv` gives, for each",
             "file, its source package and version, the original path inside the package, the licence",
             "and the credit. Licences as stated in each package's `debian/copyright` (scikit-image:",
             "the data function's docstring).", "",
             "| source | version | licence | files | credits (examples) |", "|---|---|---|---|---|"]
    for (pkg, ver, lic), rs in sorted(groups.items()):
        creds = sorted({r["credit"] for r in rs if r["credit"]})
        shown = "; ".join(c.replace("|", "/")[:80] for c in creds[:4]) + (" ..." if len(creds) > 4 else "")
        lines.append(f"| {pkg} | {ver} | {lic} | {len(rs)} | {shown} |")
    lines += ["", "Licence texts: CC-BY-SA-3.0 and CC-BY-SA-4.0 (https://creativecommons.org/licenses/),",
              "GPL-2 and GPL-2+ (/usr/share/common-licenses/GPL-2 on Debian), CC0 (public-domain dedication).",
              "Works under CC-BY-SA are shared here, downscaled, under the same licence."]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "isc-pool-work",
                    help="scratch folder for the .deb files and their unpacked contents")
    ap.add_argument("--bookworm-sources", action="store_true",
                    help="fetch from Debian 12 through a private sources list (for Debian 13 machines)")
    args = ap.parse_args(argv)
    pkgs = fetch_packages(args.work, args.bookworm_sources)
    rng = np.random.RandomState(SEED)

    pool = args.out / "pool"
    tmp = args.out / "pool.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("photos", "filler", "overlays"):
        (tmp / sub).mkdir(parents=True)
    rows = []
    seen: dict[str, list] = {"photos": [], "filler": [], "overlays": []}
    dropped = {"near_duplicate": 0, "unusable": 0}
    used: set[str] = set()

    def add(kind, name, im, pkg, version, orig, licence, credit, fmt="JPEG"):
        h, t = dhash(im), thumb(im)
        if is_near_duplicate(h, t, seen[kind]):
            dropped["near_duplicate"] += 1
            return
        seen[kind].append((h, t))
        ext = ".jpg" if fmt == "JPEG" else ".png"
        rel, n = f"{kind}/{name}{ext}", 1
        while rel in used:                      # two sources may share a base name
            n += 1
            rel = f"{kind}/{name}-{n}{ext}"
        used.add(rel)
        buf = io.BytesIO()
        if fmt == "JPEG":
            im.save(buf, "JPEG", quality=88, optimize=True)
        else:
            im.save(buf, "PNG", optimize=True)
        data = buf.getvalue()
        (tmp / rel).write_bytes(data)
        rows.append(dict(file=rel, kind=kind, source_package=pkg, package_version=version,
                         original_path=orig, licence=licence, credit=credit,
                         width=im.size[0], height=im.size[1], sha1=hashlib.sha1(data).hexdigest()))

    # 1. endless-sky landscape and city photos
    root, ver = pkgs["endless-sky-data"]
    paras = parse_dep5((root / "usr/share/doc/endless-sky-data/copyright").read_text())
    for p in sorted((root / PACKAGES["endless-sky-data"] / "images/land").glob("*.jpg")):
        cop, lic = dep5_lookup(paras, f"images/land/{p.name}")
        im = downscale(load_rgb(p), PHOTO_MAX)
        if not usable(im, 96):
            dropped["unusable"] += 1
            continue
        add("photos", f"endless-sky-{p.stem}", im, "endless-sky-data", ver,
            str(p.relative_to(root)), lic or "unknown", cop)
    # 2. scratch backgrounds (photos only: .jpg)
    root, ver = pkgs["scratch"]
    paras = parse_dep5((root / "usr/share/doc/scratch/copyright").read_text())
    for p in sorted((root / PACKAGES["scratch"] / "Media/Backgrounds").rglob("*.jpg")):
        rel = p.relative_to(root / PACKAGES["scratch"])
        cop, lic = dep5_lookup(paras, str(rel))
        im = downscale(load_rgb(p), PHOTO_MAX)
        if not usable(im, 96):
            dropped["unusable"] += 1
            continue
        add("photos", f"scratch-{p.stem}", im, "scratch", ver, str(p.relative_to(root)), lic, cop)
    # 3. scikit-image sample photos
    import skimage
    from skimage import data as skdata
    for name in SKIMAGE_PHOTOS:
        fn = getattr(skdata, name)
        doc = inspect.getdoc(fn) or ""
        notes = " ".join(doc.split("Notes", 1)[1].split()) if "Notes" in doc else ""
        notes = re.sub(r"^-+\s*", "", notes)[:300]
        arr = fn()
        if isinstance(arr, tuple):   # stereo_motorcycle: (left, right, disparity)
            arr = arr[0]
        im = Image.fromarray(arr if arr.dtype == np.uint8 else (arr * 255).astype(np.uint8)).convert("RGB")
        im = downscale(im, PHOTO_MAX)
        lic = "public-domain" if re.search(r"public domain", doc, re.I) else (
            "CC0-1.0" if re.search(r"CC0|Creative Commons Zero", doc, re.I) else
            "no known copyright restrictions" if re.search(r"no known copyright", doc, re.I) else "see credit")
        add("photos", f"skimage-{name}", im, "scikit-image (PyPI)", skimage.__version__,
            f"skimage/data/{SKIMAGE_FILES.get(name, name + '.png')}", lic, notes or "scikit-image sample data")
    # 4. clip-art filler (CC0), a seeded sample
    root, ver = pkgs["openclipart-png"]
    clip = sorted((root / PACKAGES["openclipart-png"]).rglob("*.png"))
    order = rng.permutation(len(clip))
    n = 0
    for i in order:
        if n >= N_CLIPART:
            break
        p = clip[i]
        try:
            im = downscale(load_rgb(p), FILLER_MAX)
        except Exception:
            dropped["unusable"] += 1
            continue
        if not usable(im, 48):
            dropped["unusable"] += 1
            continue
        before = len(rows)
        add("filler", f"clipart-{p.parent.name}-{p.stem}"[:80], im, "openclipart-png", ver,
            str(p.relative_to(root)), "CC0 / public domain (openclipart.org)", "Open Clip Art Library contributors")
        n += len(rows) - before
    # 5. nebula photos (training filler)
    root, ver = pkgs["stellarium-data"]
    creds = stellarium_credits(root)
    neb = root / "usr/share/stellarium/nebulae/default"
    for p in sorted(neb.glob("*.png")):
        im = downscale(load_rgb(p, background=(0, 0, 0)), FILLER_MAX)
        if not usable(im, 48):
            dropped["unusable"] += 1
            continue
        add("filler", f"nebula-{p.stem}", im, "stellarium-data", ver, str(p.relative_to(root)),
            "GPL-2+ (Stellarium), image credit as given", creds.get(p.name, "Stellarium contributors"))
    # 6. tuxpaint photo cut-outs with transparency (overlay edits)
    root, ver = pkgs["tuxpaint-stamps-default"]
    stamps = [p for p in sorted((root / PACKAGES["tuxpaint-stamps-default"]).rglob("*.png"))
              if not p.name.endswith(("_mirror.png", "_flip.png")) and "/thumbs" not in str(p)]
    order = rng.permutation(len(stamps))
    n = 0
    for i in order:
        if n >= N_STAMPS:
            break
        p = stamps[i]
        im = Image.open(p)
        im.load()
        if im.mode != "RGBA":
            im = im.convert("RGBA")
        alpha = np.asarray(im)[..., 3]
        if min(im.size) < 64 or (alpha < 10).mean() < 0.1:   # need real transparency
            dropped["unusable"] += 1
            continue
        im = downscale(im, STAMP_MAX)
        before = len(rows)
        add("overlays", f"stamp-{p.parent.name}-{p.stem}"[:80], im, "tuxpaint-stamps-default", ver,
            str(p.relative_to(root)), "GPL-2", "Tux Paint stamps, Bill Kendrick and contributors", fmt="PNG")
        n += len(rows) - before

    with open(tmp / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    stats = {k: sum(r["kind"] == k for r in rows) for k in ("photos", "filler", "overlays")}
    stats["dropped"] = dropped
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    write_credits(rows, args.out / "CREDITS.md")
    if pool.exists():
        shutil.rmtree(pool)
    tmp.rename(pool)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
