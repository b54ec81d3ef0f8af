"""Data: the embedded photo pool, the two edit generators (AugLy's and one written without it),
and the datasets built from them in the DISC21 layout: mini-DISC, its tuning set and the
transfer set. Uses only :mod:`isc_helpers.core`."""
