"""Figures used across lessons: image grids, query/reference pairs, PR curves (lesson 00)."""
from __future__ import annotations

from typing import Sequence

import os

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from ..datasets import augment
from . import keypoints, verify
from ..core.images import grey


def show_images(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 5,
                size: float = 2.6, suptitle: str | None = None):
    """Show PIL images (or arrays) in a grid; returns the figure."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(im)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_pr(curves: dict, ax=None, p90: bool = True):
    """Plot precision-recall curves: ``curves`` maps a label to an :class:`~isc_helpers.core.metrics.Evaluation`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for label, ev in curves.items():
        ax.plot(ev.recall, ev.precision, label=f"{label} (µAP {ev.uap:.3f})")
    if p90:
        ax.axhline(0.9, ls=":", c="grey", lw=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return ax


def heatmap(table, ax=None, fmt: str = "{:.2f}", cmap: str = "viridis", title: str | None = None):
    """Colour a table of numbers in [0, 1] (rows x columns, e.g. edit family x method), annotated."""
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.3 * table.shape[0] + 1.2))
    v = table.to_numpy(dtype=float)
    ax.imshow(v, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if v[i, j] < 0.5 else "black")
    if title:
        ax.set_title(title)
    return ax


def draw_box(image, box, colour=(255, 40, 40), width: int = 3):
    """A copy of a PIL image with a (left, top, right, bottom) pixel box drawn on it."""
    out = image.convert("RGB").copy()
    if box is not None:
        ImageDraw.Draw(out).rectangle([float(v) for v in box], outline=colour, width=width)
    return out


def top1_failures(preds, gt, n: int = 6):
    """Copies whose best-scored reference is wrong: (query_id, wrong_ref, wrong_score, true_ref), worst first."""
    pos = gt[gt.reference_id != ""].set_index("query_id").reference_id
    top = preds.sort_values(["query_id", "score"], ascending=[True, False], kind="mergesort") \
               .drop_duplicates("query_id")
    top = top[top.query_id.isin(pos.index)]
    wrong = top[top.reference_id.to_numpy() != pos.loc[top.query_id].to_numpy()]
    wrong = wrong.sort_values(["score", "query_id"], ascending=[False, True], kind="mergesort").head(n)
    return [(r.query_id, r.reference_id, float(r.score), pos[r.query_id]) for r in wrong.itertuples()]


def failure_gallery(ds, preds, gt, n: int = 4, title: str = ""):
    """Rows of (query, the reference it wrongly matched, the true reference)."""
    rows = top1_failures(preds, gt, n)
    if not rows:
        print("no top-1 failures among the copies")
        return None
    images, titles = [], []
    for q, wrong, score, true in rows:
        images += [ds.load(q), ds.load(wrong), ds.load(true)]
        titles += [f"query {q}", f"matched {wrong} ({score:.2f})", f"true {true}"]
    return show_images(images, titles, ncols=3, size=2.4, suptitle=title or None)


# ------------------------------------------------------------------ widgets
def has_frontend() -> bool:
    """True inside a Jupyter kernel with a live front end; False when headless.

    Headless runs (``make course``, ``make test``, nbval) set ``ISC_HEADLESS=1``; widgets
    then fall back to static figures instead of waiting for clicks that never come.
    """
    if os.environ.get("ISC_HEADLESS", "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _edit_view(ds, image_id, recipe, seed, assets):
    trace = augment.apply_edits(ds.load(image_id), recipe, seed=seed, assets=assets, track_box=True)
    lines = [f"{e['family']} (strength {e['strength']:.2f}): {e['params']}" for e in trace.log]
    box = None if trace.box is None else tuple(round(v) for v in trace.box)
    lines.append(f"original now at box {box} in a {trace.image.size[0]}x{trace.image.size[1]} image")
    return trace, "\n".join(lines)


def edit_playground(ds, assets, image_ids, families=None, static_examples=None):
    """Pick a photo and up to three edits with strengths; see the result, its box and its log.

    With a front end: an ipywidgets panel. Headless: a static grid of ``static_examples``
    (a list of (image_id, recipe, seed)) with their logs printed, so nothing waits.
    """
    families = list(families or augment.FAMILIES)
    if not has_frontend():
        examples = static_examples or [(image_ids[0], [(f, 0.6)], 0) for f in families[:6]]
        images, titles = [], []
        for image_id, recipe, seed in examples:
            trace, log = _edit_view(ds, image_id, recipe, seed, assets)
            images.append(draw_box(trace.image, trace.box))
            titles.append(" + ".join(f"{f} {s:.1f}" for f, s in recipe))
            print(f"[{titles[-1]}] {log}")
        return show_images(images, titles, ncols=3, size=3.0, suptitle="edit playground (static: no front end)")

    import ipywidgets as W
    from IPython.display import display
    photo = W.Dropdown(options=list(image_ids), description="photo")
    picks = [W.Dropdown(options=["(none)"] + families, value=families[i] if i == 0 else "(none)",
                        description=f"edit {i + 1}") for i in range(3)]
    strengths = [W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="strength") for _ in range(3)]
    seed = W.IntSlider(value=0, min=0, max=99, description="seed")
    out = W.Output()

    def render(*_):
        recipe = [(p.value, s.value) for p, s in zip(picks, strengths) if p.value != "(none)"]
        with out:
            out.clear_output(wait=True)
            trace, log = _edit_view(ds, photo.value, recipe, seed.value, assets)
            fig = show_images([ds.load(photo.value), draw_box(trace.image, trace.box)],
                              ["original", "edited (red: where the original is)"], ncols=2, size=4)
            plt.show(fig)
            print(log)
    for w in [photo, seed, *picks, *strengths]:
        w.observe(render, names="value")
    panel = W.VBox([W.HBox([photo, seed]), *[W.HBox([p, s]) for p, s in zip(picks, strengths)], out])
    panel.add_class("isc-playground")
    render()
    display(panel)
    return panel


def _browse_one(ds, preds, gt, query_id, k):
    true = dict(zip(gt.query_id, gt.reference_id)).get(query_id, "")
    top = preds[preds.query_id == query_id].sort_values("score", ascending=False, kind="mergesort").head(k)
    images = [ds.load(query_id)] + [ds.load(r) for r in top.reference_id]
    titles = [f"{query_id} ({'copy of ' + true if true else 'no match'})"] + \
             [f"{'✔ ' if r == true else ''}{r} {s:.3f}" for r, s in zip(top.reference_id, top.score)]
    return images, titles


def query_browser(ds, preds, gt, k: int = 5, query_ids=None, static_queries: int = 3):
    """Pick a query; see its top-k references with scores, the true match marked with ✔."""
    query_ids = list(query_ids if query_ids is not None else sorted(preds.query_id.unique()))
    if not has_frontend():
        for q in query_ids[:static_queries]:
            images, titles = _browse_one(ds, preds, gt, q, k)
            show_images(images, titles, ncols=k + 1, size=2.2)
            plt.show()
        return None
    import ipywidgets as W
    pick = W.Dropdown(options=query_ids, description="query")

    def figure():
        images, titles = _browse_one(ds, preds, gt, pick.value, k)
        return show_images(images, titles, ncols=k + 1, size=2.2)
    return _picker_panel(pick, figure, "isc-browser")


def _picker_panel(pick, figure, css_class: str):
    """One control above a figure that is redrawn whenever the control changes."""
    import ipywidgets as W
    from IPython.display import display
    out = W.Output()

    def render(*_):
        with out:
            out.clear_output(wait=True)
            plt.show(figure())
    pick.observe(render, names="value")
    panel = W.VBox([pick, out])
    panel.add_class(css_class)
    render()
    display(panel)
    return panel


# ------------------------------------------------------------------ lesson 05: matches
def draw_matches(query_image, ref_image, result, ax=None, title: str = "", max_lines: int = 150, sizes=None):
    """Query (left) and reference (right) side by side with match lines: inliers of the
    homography in green, other ratio-test matches in red. Positions are in the images
    as resized for SIFT, so both are resized to the sizes the keypoints were found at:
    ``sizes`` = ((w, h) of the query, (w, h) of the reference), e.g. the
    :class:`~isc_helpers.ideas.keypoints.LocalFeatures` ``.size``; default: SIFT's default resizing."""
    if sizes is None:
        sizes = [grey(im, keypoints.MAX_SIDE).shape[::-1] for im in (query_image, ref_image)]
    qa, ra = (np.asarray(im.convert("RGB").resize(tuple(size), Image.BILINEAR))
              for im, size in zip((query_image, ref_image), sizes))
    h = max(qa.shape[0], ra.shape[0])
    canvas = np.full((h, qa.shape[1] + ra.shape[1], 3), 255, np.uint8)
    canvas[:qa.shape[0], :qa.shape[1]] = qa
    canvas[:ra.shape[0], qa.shape[1]:] = ra
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 9 * h / canvas.shape[1] + 0.4))
    ax.imshow(canvas)
    ax.axis("off")
    order = np.argsort(~result.inliers, kind="stable")[:max_lines]     # inliers first
    for i in order:
        (x0, y0), (x1, y1) = result.src[i], result.dst[i]
        ax.plot([x0, x1 + qa.shape[1]], [y0, y1], "-", lw=0.7,
                c="limegreen" if result.inliers[i] else "red", alpha=0.8 if result.inliers[i] else 0.4)
    ax.set_title(title or f"{result.n_matches} ratio-test matches, {result.n_inliers} inliers", fontsize=9)
    return ax


def _match_view(ds, verified, qfeat, rfeat, gt, query_id, **verify_kwargs):
    true = dict(zip(gt.query_id, gt.reference_id)).get(query_id, "")
    rows = verified[verified.query_id == query_id].sort_values("n_inliers", ascending=False, kind="mergesort")
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    for ax, (_, row) in zip(axes, list(rows.head(2).iterrows())):
        res = verify.verify_pair(qfeat[query_id], rfeat[row.reference_id], **verify_kwargs)
        mark = "✔ true match" if row.reference_id == true else "not the original"
        draw_matches(ds.load(query_id), ds.load(row.reference_id), res, ax,
                     f"{query_id} vs {row.reference_id} ({mark}): {res.n_inliers} inliers / {res.n_matches} matches",
                     sizes=(qfeat[query_id].size, rfeat[row.reference_id].size))
    fig.tight_layout()
    return fig


def match_browser(ds, verified, qfeat, rfeat, gt, query_ids=None, static_queries: int = 2, **verify_kwargs):
    """Step through queries: the two candidates with most inliers, their match lines drawn."""
    query_ids = list(query_ids if query_ids is not None else sorted(verified.query_id.unique()))
    if not has_frontend():
        for q in query_ids[:static_queries]:
            plt.show(_match_view(ds, verified, qfeat, rfeat, gt, q, **verify_kwargs))
        return None
    import ipywidgets as W
    pick = W.IntSlider(value=0, min=0, max=len(query_ids) - 1, description="query #")
    return _picker_panel(pick, lambda: _match_view(ds, verified, qfeat, rfeat, gt, query_ids[pick.value],
                                                   **verify_kwargs), "isc-match-browser")
