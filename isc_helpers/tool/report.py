"""``report.html``: the pairs of a copy search as one self-contained page, to look at and label (lesson 09).

:func:`write_report` writes one HTML file with nothing outside it: per pair a row with the two
images side by side (JPEG thumbnails of at most :data:`THUMB_SIDE` px, each image embedded once as a
CSS class, so a photo in many pairs costs its bytes once), their names, the score, the probability,
the decision and the stage that gave the score; best score first. For the best
``match_pictures`` pairs decided copy, a third picture shows why they matched
(:mod:`isc_helpers.tool.match_picture`). At most ``max_pairs`` pairs are embedded, in pages.

**Labelling.** Each row has two buttons, *copy* and *not copy*; the pairs most worth labelling
(nearest the threshold: :func:`~isc_helpers.tool.copy_outputs.to_label`) are marked *suggested*
and can be shown alone. Labels are kept in the browser (``localStorage``) while you work;
*Export labels* downloads ``labels.csv`` (query, reference, copy), the file
``isc-course find-copies --labels`` reads: a pair labelled *not copy* is then never decided copy
and never joins a group, and the threshold is fitted to your labels.
"""
from __future__ import annotations

import base64
import html
import io as _bytes_io
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core import formats
from ..core.errors import SettingError
from ..core.images import ImageError, load_image
from . import match_picture
from .collection import decide
from .copy_outputs import to_label

REPORT_FILE = "report.html"
THUMB_SIDE = 96
THUMB_QUALITY = 70
MAX_PAIRS = 2000
MATCH_PICTURES = 40           # pairs decided copy that get a picture of their matched region
MATCH_SIDE = 150              # each image's longer side in that picture

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:middle}
.th{width:96px;height:96px;background:center/contain no-repeat}td.why{font-size:80%;color:#555;max-width:320px}
td.why img{display:block;max-width:310px}.name{font-family:monospace;font-size:85%;max-width:14em;word-break:break-all}
tr.copy td.decision{color:#0a6b2d;font-weight:bold}.missing{color:#a00;font-size:85%}
nav button{margin:0 2px}nav button.current{font-weight:bold}.note{color:#555}
td.label button{margin:1px}tr[data-label="copy"] td.label button[data-l="copy"]{background:#bfe5c8}
tr[data-label="not copy"] td.label button[data-l="not copy"]{background:#f3c4c4}
.badge{font-size:75%;background:#ffe9a8;padding:1px 4px;border-radius:3px}
body.only-suggested tr:not(.suggested){display:none}body.only-labelled tr[data-label=""]{display:none}
"""

# pages, labels (kept in localStorage), filters and the export of labels.csv
_SCRIPT = """
var KEY='isc-labels:'+document.title+':'+document.body.dataset.pairs;
var saved=JSON.parse(localStorage.getItem(KEY)||'{}');
function rowKey(tr){return tr.dataset.q+'\\u0000'+tr.dataset.r;}
function setLabel(tr,l){tr.dataset.label=l;saved[rowKey(tr)]=l;localStorage.setItem(KEY,JSON.stringify(saved));count();}
function count(){var n=document.querySelectorAll('tr[data-label="copy"],tr[data-label="not copy"]').length;
  document.getElementById('export').textContent='Export labels ('+n+')';}
document.querySelectorAll('tbody tr').forEach(function(tr){
  if(saved[rowKey(tr)]!==undefined){tr.dataset.label=saved[rowKey(tr)];}
  tr.querySelectorAll('td.label button').forEach(function(b){b.addEventListener('click',function(){
    setLabel(tr, tr.dataset.label==b.dataset.l?'':b.dataset.l);});});});
function q(s){return '"'+String(s).replace(/"/g,'""')+'"';}
document.getElementById('export').addEventListener('click',function(){
  var lines=['query,reference,copy'];
  document.querySelectorAll('tbody tr').forEach(function(tr){var l=tr.dataset.label;
    if(l=='copy'||l=='not copy'){lines.push([q(tr.dataset.q),q(tr.dataset.r),l=='copy'?'yes':'no'].join(','));}});
  var a=document.createElement('a');
  a.href=URL.createObjectURL(new Blob([lines.join('\\n')+'\\n'],{type:'text/csv'}));
  a.download='labels.csv';document.body.appendChild(a);a.click();a.remove();});
function showPage(n){
  document.querySelectorAll('section.page').forEach(function(s){s.hidden=(s.dataset.page!=String(n));});
  document.querySelectorAll('nav.pager button').forEach(function(b){
    b.classList.toggle('current', b.dataset.page==String(n));});}
document.querySelectorAll('nav.pager button').forEach(function(b){
  b.addEventListener('click', function(){showPage(b.dataset.page);});});
document.querySelectorAll('input[name=show]').forEach(function(r){r.addEventListener('change',function(){
  document.body.classList.toggle('only-suggested',r.value=='suggested'&&r.checked);
  document.body.classList.toggle('only-labelled',r.value=='labelled'&&r.checked);
  if(r.checked&&r.value!='all'){document.querySelectorAll('section.page').forEach(function(s){s.hidden=false;});}
  else if(r.checked){showPage(1);}});});
count();
"""


def _jpeg_uri(im, quality: int = THUMB_QUALITY) -> str:
    buf = _bytes_io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(path) -> str | None:
    """A JPEG data URI of the image at ``path`` (upright, longer side at most :data:`THUMB_SIDE`),
    or None when it cannot be read."""
    try:
        return _jpeg_uri(load_image(path, max_side=THUMB_SIDE))
    except (ImageError, OSError):
        return None


def _text(value) -> str:
    """A name as HTML text (a file name that is not valid UTF-8 shows its bytes as escapes)."""
    return html.escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"), quote=True)


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
    pic = match_picture.match_picture(*sides, side=MATCH_SIDE)
    caption = html.escape(pic.caption())
    return f'<td class="why"><img src="{_jpeg_uri(pic.image)}" alt="{caption}" loading="lazy">{caption}</td>'


def _image_cell(side: str, image_id: str, resolve_path, thumbs: dict) -> str:
    key = resolve_path(side, image_id)                # per file: one folder shows an image on both sides
    if key not in thumbs:
        thumbs[key] = (f"t{len(thumbs)}", thumbnail_uri(key))
    cls, uri = thumbs[key]
    name = _text(image_id)
    img = (f'<div class="th {cls}" role="img" aria-label="{name}"></div>' if uri
           else '<span class="missing">cannot be read</span>')
    return f'<td class="img">{img}</td><td class="name">{name}</td>'


def _row(n: int, pair, resolve_path, thumbs: dict, why: dict | None, suggested: bool) -> str:
    """One pair's table row; ``why``: the features cache when this pair gets a matched-region picture."""
    decision = str(pair.decision)
    label = str(getattr(pair, "label", "") or "")
    cells = (f"<td>{n}{' <span class=badge>suggested</span>' if suggested else ''}</td>"
             + _image_cell("query", pair.query, resolve_path, thumbs)
             + _image_cell("reference", pair.reference, resolve_path, thumbs)
             + f"<td>{float(pair.score):.4g}</td>"
             + (f"<td>{float(pair.probability):.2f}</td>" if hasattr(pair, "probability") else "")
             + f'<td class="decision">{html.escape(decision)}</td><td>{html.escape(str(pair.stage))}</td>'
             + '<td class="label"><button type="button" data-l="copy">copy</button>'
             + '<button type="button" data-l="not copy">not copy</button></td>'
             + (_why_cell(pair, resolve_path, why) if why is not None else '<td class="why"></td>'))
    cls = ("copy" if decision == "copy" else "other") + (" suggested" if suggested else "")
    return (f'<tr class="{cls}" data-q="{_text(pair.query)}" data-r="{_text(pair.reference)}" '
            f'data-label="{html.escape(label)}">{cells}</tr>')


def _page(number: int, rows: list[str], probability: bool = False) -> str:
    head = ("<tr><th>#</th><th>query</th><th></th><th>reference</th><th></th><th>score</th>"
            + ("<th>probability</th>" if probability else "") + "<th>decision</th><th>stage</th>"
            "<th>your label</th><th>matched region</th></tr>")
    hidden = "" if number == 1 else " hidden"
    return (f'<section class="page" data-page="{number}"{hidden}><table><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def _pager(n_pages: int) -> str:
    if n_pages <= 1:
        return ""
    buttons = "".join(f'<button type="button" data-page="{p}"{" class=current" if p == 1 else ""}>{p}</button>'
                      for p in range(1, n_pages + 1))
    return f'<nav class="pager">Page: {buttons}</nav>'


def _header(title: str, pairs: pd.DataFrame, shown: int, threshold, n_suggested: int, note: str = "") -> str:
    n_copy = int((pairs.decision == "copy").sum())
    cut = "" if threshold is None else f" (score at least {float(threshold):g}, or labelled copy)"
    lines = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(pairs)} candidate pair(s); <b>{n_copy}</b> decided copy{cut}. Sorted by score, highest "
             "first.</p>"]
    if note:
        lines.append(f'<p class="note">{html.escape(note)}</p>')
    if "probability" in pairs:
        lines.append('<p class="note">probability: the estimated chance that a pair is a copy, on this collection '
                     "(see the decision above for how it was estimated).</p>")
    if shown < len(pairs):
        lines.append(f'<p class="note">Only the top {shown} of {len(pairs)} pairs are shown here; '
                     "pairs.csv holds them all.</p>")
    lines.append(f'<p>Label pairs with the buttons of each row ({n_suggested} suggested: the decisions a label can '
                 'change), then <button type="button" id="export">Export labels</button> and run find-copies again '
                 "with <code>--labels labels.csv</code>. Show: <label><input type=radio name=show value=all checked> "
                 "all</label> <label><input type=radio name=show value=suggested> suggested</label> "
                 "<label><input type=radio name=show value=labelled> labelled</label></p>")
    return "\n".join(lines)


def _thumb_style(thumbs: dict) -> str:
    return "".join(f".{cls}{{background-image:url({uri})}}" for cls, uri in thumbs.values() if uri)


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
    suggested = set() if threshold is None else set(zip(*to_label(shown, threshold)[["query", "reference"]].values.T))
    thumbs, features = {}, {}
    drawn = set(shown.index[shown.decision == "copy"][:max(0, match_pictures)])
    rows = [_row(n + 1, p, resolve_path, thumbs, features if n in drawn else None, (p.query, p.reference) in suggested)
            for n, p in enumerate(shown.itertuples(index=False))]
    pages = [_page(i // page_size + 1, rows[i:i + page_size], "probability" in pairs)
             for i in range(0, max(len(rows), 1), page_size)]
    pager = _pager(len(pages))
    body = _header(title, ordered, len(shown), threshold, len(suggested), note) + pager + "".join(pages) + pager
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}{_thumb_style(thumbs)}</style></head>\n<body data-pairs=\"{len(shown)}\">\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n")


def write_report(pairs: pd.DataFrame, resolve_path: Callable, out_path, title: str = "Copy detection report",
                 page_size: int = 100, threshold: float | None = None, max_pairs: int = MAX_PAIRS,
                 note: str = "", match_pictures: int = MATCH_PICTURES) -> Path:
    """Write ``report.html`` for ``pairs`` (columns query, reference, score and, when present,
    probability, label, decision and stage; without decision, ``threshold`` decides) to
    ``out_path``; returns it. ``note``: a sentence shown under the title (how the threshold was
    chosen). ``match_pictures``: how many of the best pairs decided copy get a picture of their
    matched region (SIFT on both images: about 0.1 s a pair; 0 for none).

    ``resolve_path(side, image_id)``: the file of an image, ``side`` being "query" or
    "reference". An image that cannot be read shows as such; the report is still written.
    """
    text = render_report(pairs, resolve_path, title, page_size, threshold, max_pairs, note, match_pictures)
    out_path = Path(out_path)
    formats.atomic_write(out_path, lambda t: Path(t).write_text(text, encoding="utf-8", errors="backslashreplace"))
    return out_path
