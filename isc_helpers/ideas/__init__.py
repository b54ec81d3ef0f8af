"""One module per lesson idea: training objectives and the training loop (03), local-global
matching and overlays (04), keypoints and verification (05), normalization (06), evaluation at
scale (07), the pair verifier and ensembles (08), plus the lessons' figures. Uses
:mod:`isc_helpers.core` and :mod:`isc_helpers.datasets`."""
