"""isc_helpers: the helper package of the image copy detection course.

Split by pipeline stage (data, augment, metrics, io, search, viz, checks, cli...).
Importing the package has no side effects; import the stage you need, e.g.
``from isc_helpers import metrics``.
"""
__version__ = "0.1.0"
