"""``report.html``: the pairs of a copy search as one self-contained page (lesson 09).

:func:`write_report` writes one HTML file with nothing outside it: per pair a row with the two
images side by side (JPEG thumbnails of at most :data:`THUMB_SIDE` px, embedded as base64 data
URIs), their names, the score, the decision and the stage that gave the score; best score first.
For the best ``match_pictures`` pairs decided copy, a third picture shows why they matched
(:mod:`isc_helpers.tool.match_picture`: the SIFT keypoints that agree on one geometry and the matched
region outlined in both images).
Large results are split into pages of ``page_size`` pairs inside the one file, switched by a small
inline script (without scripts, the first page shows). At most ``max_pairs`` pairs are embedded
(the page says so when more were found; ``pairs.csv`` holds them all).
"""
from __future__ import annotations

import base64
import html
import io as _bytes_io
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core import formats
from . import match_picture
from .collection import decide
from ..core.images import ImageError, load_image
from ..core.errors import SettingError

REPORT_FILE = "report.html"
THUMB_SIDE = 160
MAX_PAIRS = 2000
MATCH_PICTURES = 100          # pairs decided copy that get a picture of their matched region

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}
td.img{width:164px;text-align:center}td.img img{max-width:160px;max-height:160px}
td.why{font-size:80%;color:#555;max-width:420px}td.why img{display:block;max-width:410px}
.name{font-family:monospace;font-size:90%;max-width:16em;word-break:break-all}
tr.copy td.decision{color:#0a6b2d;font-weight:bold}.missing{color:#a00;font-size:85%}
nav button{margin:0 2px}nav button.current{font-weight:bold}.note{color:#555}
"""

# shows page n (1-based); every nav has one button per page
_SCRIPT = """
function showPage(n){
  document.querySelectorAll('section.page').forEach(function(s){s.hidden=(s.dataset.page!=String(n));});
  document.querySelectorAll('nav.pager button').forEach(function(b){
    b.classList.toggle('current', b.dataset.page==String(n));});
}
document.querySelectorAll('nav.pager button').forEach(function(b){
  b.addEventListener('click', function(){showPage(b.dataset.page);});});
"""


def _jpeg_uri(im) -> str:
    buf = _bytes_io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(path) -> str | None:
    """A JPEG data URI of the image at ``path`` (upright, longer side at most :data:`THUMB_SIDE`),
    or None when it cannot be read."""
    try:
        return _jpeg_uri(load_image(path, max_side=THUMB_SIDE))
    except (ImageError, OSError):
        return None


def _why_cell(pair, resolve_path, features: dict) -> str:
    """The matched-region picture of a pair, with its caption (empty when either image cannot be
    read). ``features``: SIFT per file, so an image on both sides (one folder) is described once."""
    sides = []
    for side, image_id in (("query", pair.query), ("reference", pair.reference)):
        path = resolve_path(side, image_id)
        if path not in features:
            try:
                features[path] = match_picture.features(path)
            except (ImageError, OSError):
                features[path] = None
        sides.append(features[path])
    if None in sides:
        return '<td class="why"></td>'
    pic = match_picture.match_picture(*sides)
    caption = html.escape(pic.caption())
    return f'<td class="why"><img src="{_jpeg_uri(pic.image)}" alt="{caption}" loading="lazy">{caption}</td>'


def _image_cell(side: str, image_id: str, resolve_path, thumbs: dict) -> str:
    key = resolve_path(side, image_id)                # per file: one folder shows an image on both sides
    if key not in thumbs:
        thumbs[key] = thumbnail_uri(key)
    name = html.escape(str(image_id))
    img = (f'<img src="{thumbs[key]}" alt="{name}" loading="lazy">' if thumbs[key]
           else '<span class="missing">cannot be read</span>')
    return f'<td class="img">{img}</td><td class="name">{name}</td>'


def _row(n: int, pair, resolve_path, thumbs: dict, why: dict | None = None) -> str:
    """One pair's table row; ``why``: the features cache when this pair gets a matched-region picture."""
    decision = str(pair.decision)
    cells = (f"<td>{n}</td>" + _image_cell("query", pair.query, resolve_path, thumbs)
             + _image_cell("reference", pair.reference, resolve_path, thumbs)
             + f"<td>{float(pair.score):.4g}</td>"
             + (f"<td>{float(pair.probability):.2f}</td>" if hasattr(pair, "probability") else "")
             + f"<td class=\"decision\">{html.escape(decision)}</td>"
             + f"<td>{html.escape(str(pair.stage))}</td>"
             + (_why_cell(pair, resolve_path, why) if why is not None else '<td class="why"></td>'))
    cls = "copy" if decision == "copy" else "other"
    return f'<tr class="{cls}">{cells}</tr>'


def _page(number: int, rows: list[str], probability: bool = False) -> str:
    head = ("<tr><th>#</th><th>query</th><th></th><th>reference</th><th></th><th>score</th>"
            + ("<th>probability</th>" if probability else "") + "<th>decision</th><th>stage</th>"
            "<th>matched region</th></tr>")
    hidden = "" if number == 1 else " hidden"
    return (f'<section class="page" data-page="{number}"{hidden}><table><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def _pager(n_pages: int) -> str:
    if n_pages <= 1:
        return ""
    buttons = "".join(f'<button type="button" data-page="{p}"{" class=current" if p == 1 else ""}>{p}</button>'
                      for p in range(1, n_pages + 1))
    return f'<nav class="pager">Page: {buttons}</nav>'


def _header(title: str, pairs: pd.DataFrame, shown: int, threshold, page_size: int, n_pages: int,
            note: str = "") -> str:
    n_copy = int((pairs.decision == "copy").sum())
    cut = "" if threshold is None else f" (score at least {float(threshold):g})"
    lines = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(pairs)} candidate pair(s); <b>{n_copy}</b> decided copy{cut}. "
             f"Threshold: {'n/a' if threshold is None else f'{float(threshold):g}'} (raw score). "
             "Sorted by score, highest first.</p>"]
    if note:
        lines.append(f'<p class="note">{html.escape(note)}</p>')
    if "probability" in pairs:
        lines.append('<p class="note">probability: the estimated chance that a pair is a copy, calibrated on this '
                     "collection as the decision above says (by default: how many pairs it gave at that score "
                     "against how many false ones decoy images, edited photos from outside it, brought).</p>")
    if shown < len(pairs):
        lines.append(f'<p class="note">Only the top {shown} of {len(pairs)} pairs are shown here; '
                     "pairs.csv holds them all.</p>")
    if n_copy:
        lines.append('<p class="note">matched region: for the best pairs decided copy, the SIFT keypoints of both '
                     "images that agree on one geometry (green lines) and the region they cover (outlined), as "
                     "lesson 05 verifies a pair.</p>")
    if n_pages > 1:
        lines.append(f'<p class="note">{n_pages} pages of {page_size} pairs; use the page buttons '
                     "(without scripts only the first page shows).</p>")
    return "\n".join(lines)


def render_report(pairs: pd.DataFrame, resolve_path: Callable, title: str = "Copy detection report",
                  page_size: int = 100, threshold: float | None = None, max_pairs: int = MAX_PAIRS,
                  note: str = "", match_pictures: int = MATCH_PICTURES) -> str:
    """The HTML text of :func:`write_report`."""
    if page_size < 1:
        raise SettingError(f"page_size must be at least 1, not {page_size}")
    if "decision" not in pairs:
        if threshold is None:
            raise SettingError("pairs have no decision column; give a threshold")
        pairs = decide(pairs, threshold)
    if "stage" not in pairs:
        pairs = pairs.assign(stage="")
    ordered = pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    shown = ordered.head(max_pairs)
    thumbs, features = {}, {}
    drawn = set(shown.index[shown.decision == "copy"][:max(0, match_pictures)])
    rows = [_row(n + 1, p, resolve_path, thumbs, features if n in drawn else None)
            for n, p in enumerate(shown.itertuples(index=False))]
    pages = [_page(i // page_size + 1, rows[i:i + page_size], "probability" in pairs)
             for i in range(0, max(len(rows), 1), page_size)]
    pager = _pager(len(pages))
    body = _header(title, ordered, len(shown), threshold, page_size, len(pages), note) + pager + "".join(pages) + pager
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n{body}\n<script>{_SCRIPT}</script>\n</body></html>\n")


def write_report(pairs: pd.DataFrame, resolve_path: Callable, out_path, title: str = "Copy detection report",
                 page_size: int = 100, threshold: float | None = None, max_pairs: int = MAX_PAIRS,
                 note: str = "", match_pictures: int = MATCH_PICTURES) -> Path:
    """Write ``report.html`` for ``pairs`` (columns query, reference, score and, when present,
    probability, decision and stage; without decision, ``threshold`` decides) to ``out_path``;
    returns it. ``note``: a sentence shown under the title (how the threshold was chosen).
    ``match_pictures``: how many of the best pairs decided copy get a picture of their matched
    region (SIFT on both images: about 0.1 s a pair; 0 for none).

    ``resolve_path(side, image_id)``: the file of an image, ``side`` being "query" or
    "reference". An image that cannot be read shows as such; the report is still written.
    """
    text = render_report(pairs, resolve_path, title, page_size, threshold, max_pairs, note, match_pictures)
    out_path = Path(out_path)
    formats.atomic_write(out_path, lambda t: Path(t).write_text(text, encoding="utf-8"))
    return out_path

