"""The practitioner's tool: every taught method as one pipeline (``isc-course run``), copies in
any folder of photos with calibrated decisions, the HTML report, a growing index, the
environment check, and the ``isc-course`` command line on top. Uses every other room."""
