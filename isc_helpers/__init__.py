"""isc_helpers: the helper package of the image copy detection course.

Four rooms, one subpackage each, imported in one direction only (a room uses the rooms above it
in this list, never those below):

* :mod:`isc_helpers.core`: the foundations: profile, formats, images, cache, metric, search,
  models and global descriptors;
* :mod:`isc_helpers.datasets`: the photo pool, the edit generators and the datasets built from
  them (mini-DISC, the tuning set, the transfer set);
* :mod:`isc_helpers.ideas`: one module per lesson idea (training, local-global matching, SIFT
  verification, normalization, ...);
* :mod:`isc_helpers.tool`: the practitioner's tool: the pipeline command, find-copies on any
  folder, calibrated decisions, the report, the growing index, and the ``isc-course`` CLI.

Inside a room, modules sit on floors (:data:`LAYERS`): a module imports only modules of lower
floors of its room, or of earlier rooms; ``tests/test_layers.py`` checks that each floor is as
low as the module's imports allow, and that nothing imports upwards. Importing the package has
no side effects; import the module you need, e.g. ``from isc_helpers.core import metrics``.
"""
__version__ = "0.3.0"

# room -> floors, lowest first (a module's floor: one above the highest floor of the modules of
# its own room that it imports; tests/test_layers.py recomputes them from the imports).
LAYERS = {
    "core": (("device", "errors"), ("cache", "formats", "images", "profile"),
             ("metrics", "models", "search", "train_config"), ("checkpoints", "evidence"), ("descriptors",)),
    "datasets": (("augly_compat", "dataset", "edits"), ("augment", "transfer_edits"), ("build", "photo_folder"),
                 ("minidisc", "transfer", "tuning")),
    "ideas": (("exercises_00_03", "heads", "keypoints", "normalize", "objectives", "scale", "tasks"),
              ("ensembles", "overlays", "training", "verify"), ("local_global", "pair_verifier", "viz"),
              ("exercises_04_09",), ("exercises",)),
    "tool": (("calibration", "checks", "index_files", "match_picture", "outputs", "pipeline"), ("probe", "run"),
             ("collection",), ("copy_index", "copy_outputs"), ("report",), ("cli",)),
}

# The practitioner's entry points, importable from the package itself, loaded on first use (so
# that importing the package stays free of side effects and of torch):
#   from isc_helpers import find_copies, CopyIndex
_ENTRY_POINTS = {"find_copies": ("tool.collection", "find_copies"), "decide": ("tool.collection", "decide"),
                 "groups": ("tool.collection", "groups"), "CopyIndex": ("tool.copy_index", "CopyIndex")}


def __getattr__(name):
    if name in _ENTRY_POINTS:
        import importlib
        module, attr = _ENTRY_POINTS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
