"""isc_helpers: the helper package of the image copy detection course.

One module per idea, in layers: a module imports only modules of *earlier* layers
(:data:`LAYERS`; ``tests/test_layers.py`` fails on any other import and on any circle).
Importing the package has no side effects; import the module you need, e.g.
``from isc_helpers import metrics``.
"""
__version__ = "0.2.0"

# Each tuple is one layer, lowest first. Shared layers, then one module per lesson idea
# (in the order they depend on each other, not the lesson order), then the user-facing top.
LAYERS = (
    # shared: foundations
    ("profile", "device", "io", "images", "cache", "augly_compat"),
    # shared: data, edits, metric and search on arrays
    ("augment", "data", "metrics", "search"),
    # shared: the second edit generator (written without AugLy)
    ("transfer_edits",),
    # shared: datasets the course builds; networks
    ("minidisc", "models"),
    # shared: training configs and checkpoints; small heads on frozen features; the transfer set
    ("checkpoints", "heads", "transfer"),
    # shared: global descriptors, their registry and per-dataset extraction
    ("descriptors",),
    # shared: typed tuning and evaluation tasks
    ("tasks",),
    # lesson ideas that the others build on: objectives (03), keypoints (05), normalization (06)
    ("objectives", "keypoints", "normalize"),
    # lesson ideas: training (03), local-global and overlays (04), verification (05),
    # evaluation at scale (07), pair verifier and ensembles (08)
    ("training", "local_global", "overlays", "verify", "scale", "pair_verifier", "ensembles"),
    # the pipeline of every method (07)
    ("pipeline",),
    # what a method's scores mean: probabilities and thresholds for a precision (issue 16)
    ("calibration",),
    # any folder of photos through the pipeline: copies, decisions, groups (issue 16)
    ("collection",),
    # a descriptor index of a collection that grows (issue 16)
    ("index",),
    # user-facing: why a pair matched, drawn (verified keypoints and the matched region)
    ("match_picture",),
    # user-facing: the report of a copy search (issue 16)
    ("report",),
    # user-facing: figures and widgets, the environment check
    ("viz", "checks"),
    # the command line
    ("cli",),
)

# The practitioner's entry points, importable from the package itself, loaded on first use (so
# that importing the package stays free of side effects and of torch):
#   from isc_helpers import find_copies, CopyIndex
_ENTRY_POINTS = {"find_copies": ("collection", "find_copies"), "decide": ("collection", "decide"),
                 "groups": ("collection", "groups"), "CopyIndex": ("index", "CopyIndex")}


def __getattr__(name):
    if name in _ENTRY_POINTS:
        import importlib
        module, attr = _ENTRY_POINTS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
