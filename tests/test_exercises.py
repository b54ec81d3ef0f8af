"""Every exercise check passes a correct answer and fails a plausible wrong one (the checks live in
isc_helpers.ideas.exercises; the lessons call them)."""
import numpy as np
import pytest

from isc_helpers.ideas import exercises


def test_compare_says_what_differs():
    exercises.compare("0.0", [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(exercises.ExerciseError, match="expected shape"):
        exercises.compare("0.0", [1.0], [1.0, 2.0])
    with pytest.raises(exercises.ExerciseError, match="max difference 1"):
        exercises.compare("0.0", [1.0, 3.0], [1.0, 2.0], hint="look again")
    with pytest.raises(exercises.ExerciseError, match="returned None"):
        exercises.compare("0.0", None, [1.0])


# lessons 00-02 answers (the lessons' solutions, and plausible slips)
def _micro_ap(scores, is_tp, n_gt, tp_first=False, over_found=False):
    scores, is_tp = np.asarray(scores, float), np.asarray(is_tp, bool)
    tp = is_tp[np.lexsort((~is_tp if tp_first else is_tp, -scores))]
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float(precision[tp].sum() / (max(1, tp.sum()) if over_found else n_gt))


def _keep_global(preds, budget, per_query=False, ascending=False):
    if per_query:
        k = -(-budget // preds.query_id.nunique())
        return preds.sort_values("score", ascending=False).groupby("query_id").head(k).head(budget)
    return preds.sort_values("score", ascending=ascending).head(budget)


def _area_fraction(trace, pixels=False, none_ok=True):
    if trace.box is None and none_ok:
        return 0.0
    l, t, r, b = trace.box
    return (r - l) * (b - t) / (1 if pixels else trace.image.size[0] * trace.image.size[1])


def _invert_left(im, s, rng, ctx, global_rng=False, in_place=False):
    from PIL import ImageOps
    share = np.random.uniform(0.5, 1.0) if global_rng else rng.uniform(0.5, 1.0)
    w = max(1, int(round(s * share * im.width)))
    out = im if in_place else im.copy()
    out.paste(ImageOps.invert(im.crop((0, 0, w, im.height)).convert("RGB")), (0, 0))
    return out, {"inverted_width": w}


def _colour_thumb(paths, grey=False, centre=True, planes=False):
    from PIL import Image
    from isc_helpers.core import images
    ims = [images.load_image(p).convert("L" if grey else "RGB").resize((8, 8), Image.BILINEAR) for p in paths]
    x = np.stack([np.asarray(im, np.float32) for im in ims])
    x = (x.transpose(0, 3, 1, 2) if planes else x).reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True) if centre else x
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _hamming_search(q, r, k, agree=False, bytes_only=False):
    diff = q[:, None, :] ^ r[None, :, :]
    d = ((diff != 0) if bytes_only else np.unpackbits(diff, axis=2)).sum(-1).astype(np.int64)
    s = (q.shape[1] * 8 - d) if agree else -d
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, axis=1).astype(np.float32), idx


# lesson 03 answers (the lesson's solutions, and plausible slips)
def _info_nce_memory(z1, z2, labels, memory, memory_labels, temperature=0.05, tau=True, own=True, axis=1):
    import torch
    import torch.nn.functional as F
    n, t = len(z1), temperature if tau else 1.0
    z = torch.cat([z1, z2])
    logits = (z @ z.T / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    same = torch.cat([labels, labels])[:, None] == memory_labels[None, :]
    extra = (z @ memory.T / t).masked_fill(same & own, float("-inf"))
    logp = F.log_softmax(torch.cat([logits, extra], dim=1), dim=axis)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return -logp[torch.arange(2 * n), partner].mean()


def _info_nce_package(z1, z2, labels, memory, memory_labels, temperature=0.05):
    from isc_helpers.ideas import objectives
    return objectives.info_nce(z1, z2, temperature, memory, labels.repeat(2)[:, None] == memory_labels[None, :])


def _pair_loss(q, r, neg_margin=1.0, negatives=True, diagonal=False, squared=False):
    import torch
    d = torch.cdist(q, r) ** (2 if squared else 1)
    off = torch.ones_like(d, dtype=torch.bool) if diagonal else ~torch.eye(len(q), dtype=torch.bool)
    return d.diagonal().mean() + (torch.relu(neg_margin - d[off]).mean() if negatives else 0)


# lesson 04 answers
def _iou(a, b, clamp=True):
    ix, iy = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, ix) * max(0, iy) if clamp else max(0, ix * iy)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def _grid_boxes(w, h, grid=2, overlap=0.25, shrink=True):
    cw, ch = (w / (grid - (grid - 1) * overlap), h / (grid - (grid - 1) * overlap)) if shrink else (w / grid, h / grid)
    step = (1 - overlap) if shrink else 1
    return [(round(i * cw * step), round(j * ch * step), round(min(w, i * cw * step + cw)), round(min(h, j * ch * step + ch)))
            for j in range(grid) for i in range(grid)]


# lesson 05 answers (the lesson's solutions, and plausible slips)
def _ratio_test(a, b, ratio=0.8, squared=False):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    d = d if squared else np.sqrt(d)
    order = np.argsort(d, axis=1)[:, :2]
    rows = np.arange(len(a))
    keep = d[rows, order[:, 0]] < ratio * d[rows, order[:, 1]]
    return [(int(i), int(order[i, 0])) for i in rows[keep]]


def _inliers_for(p, w, exp=np.expm1):
    return float(exp((np.log(p / (1 - p)) - w[1]) / w[0]))


# lesson 06 answers
def _stretch(q, train, k=5, factor=2.5, top=None):
    s = np.sort(q @ train.T, axis=1)[:, -k:]
    s = s.max(1) if top == "max" else s.mean(1)
    return (factor * s[:, None] * q).astype(np.float32)


def _isc_score_normalize(q, r, train, n=10, factor=2.0, reduction="min"):
    top = np.sort(q @ train.T, axis=1)[:, -n:]
    bias = top[:, 0] if reduction == "min" else top.mean(1)
    return np.hstack([q, -factor * bias[:, None]]), np.hstack([r, np.ones((len(r), 1))])


# lessons 07-09 answers
def _ivfpq_bytes(n, m, nlist, d, id_bytes=8, codebooks=True):
    return n * (m + id_bytes) + nlist * d * 4 + (256 * d * 4 if codebooks else 0)


def _smallest_nprobe(recall_at, nlist, target=0.95, strict=False, linear=False):
    if linear:
        return next(p for p in range(1, nlist + 1) if recall_at(p) >= target)
    lo, hi = 1, nlist
    while lo < hi:
        mid = (lo + hi) // 2
        reached = recall_at(mid) > target if strict else recall_at(mid) >= target
        lo, hi = (lo, mid) if reached else (mid + 1, hi)
    return lo


def _ridge_map(S, T, ridge=1e-2, centre=True, times_n=True):
    A = S - S.mean(0) if centre else S
    return np.linalg.solve(A.T @ A + ridge * (len(S) if times_n else 1) * np.eye(S.shape[1]), A.T @ (T - T.mean(0)))


def _choose_k(top10, gt, target=0.95, zero_based=False, over_all=False):
    from isc_helpers.core import search
    from isc_helpers.ideas import verify
    ranked = search.top_k(top10, 10)
    ranks = ranked["rank"].to_numpy()[verify.label(ranked, gt) == 1]
    n = (gt.reference_id != "").sum() if over_all else len(ranks)
    return next((k - zero_based for k in range(1, 11) if (ranks < k).sum() / n >= target), None)


def _precision_recall(scores, labels, n_copies, threshold, strict=False):
    accepted = scores > threshold if strict else scores >= threshold
    correct = int((accepted & labels).sum())
    return correct / max(1, accepted.sum()), correct / n_copies


def _groups(pairs, threshold, transitive=True):
    if not transitive:
        return {frozenset((a, b)) for a, b, s in zip(pairs["query"], pairs["reference"], pairs.score) if s >= threshold}
    parent = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x
    for a, b, s in zip(pairs["query"], pairs["reference"], pairs.score):
        if s >= threshold:
            parent[root(a)] = root(b)
    members = {}
    for x in parent:
        members.setdefault(root(x), set()).add(x)
    return {frozenset(m) for m in members.values()}


# Each lesson adds its rows: (check, a correct answer, a plausible wrong answer). ---------------
CASES = [
    # lesson 00
    (exercises.check_00_1, _micro_ap, lambda s, t, n: _micro_ap(s, t, n, tp_first=True)),
    (exercises.check_00_1, _micro_ap, lambda s, t, n: _micro_ap(s, t, n, over_found=True)),
    (exercises.check_00_2, _keep_global, lambda p, b: _keep_global(p, b, per_query=True)),
    (exercises.check_00_2, _keep_global, lambda p, b: _keep_global(p, b, ascending=True)),
    # lesson 01
    (exercises.check_01_1, _area_fraction, lambda t: _area_fraction(t, pixels=True)),
    (exercises.check_01_1, _area_fraction, lambda t: _area_fraction(t, none_ok=False)),
    (exercises.check_01_2, _invert_left, lambda im, s, rng, ctx: _invert_left(im, s, rng, ctx, global_rng=True)),
    (exercises.check_01_2, _invert_left, lambda im, s, rng, ctx: _invert_left(im, s, rng, ctx, in_place=True)),
    # lesson 02
    (exercises.check_02_1, _colour_thumb, lambda paths: _colour_thumb(paths, grey=True)),
    (exercises.check_02_1, _colour_thumb, lambda paths: _colour_thumb(paths, centre=False)),
    (exercises.check_02_1, _colour_thumb, lambda paths: _colour_thumb(paths, planes=True)),
    (exercises.check_02_2, _hamming_search, lambda q, r, k: _hamming_search(q, r, k, agree=True)),
    (exercises.check_02_2, _hamming_search, lambda q, r, k: _hamming_search(q, r, k, bytes_only=True)),
    # lesson 03
    (exercises.check_03_1, _info_nce_memory, lambda *a, temperature=0.05: _info_nce_memory(*a, temperature, tau=False)),
    (exercises.check_03_1, _info_nce_package, lambda *a, temperature=0.05: _info_nce_memory(*a, temperature, own=False)),
    (exercises.check_03_1, _info_nce_memory, lambda *a, temperature=0.05: _info_nce_memory(*a, temperature, axis=0)),
    (exercises.check_03_2, _pair_loss, lambda q, r, neg_margin=1.0: _pair_loss(q, r, neg_margin, negatives=False)),
    (exercises.check_03_2, _pair_loss, lambda q, r, neg_margin=1.0: _pair_loss(q, r, neg_margin, diagonal=True)),
    (exercises.check_03_2, _pair_loss, lambda q, r, neg_margin=1.0: _pair_loss(q, r, 1.0)),
    # lesson 07
    (exercises.check_07_1, _ivfpq_bytes, lambda n, m, nlist, d: _ivfpq_bytes(n, m, nlist, d, id_bytes=0)),
    (exercises.check_07_1, _ivfpq_bytes, lambda n, m, nlist, d: _ivfpq_bytes(n, m, nlist, d, codebooks=False)),
    (exercises.check_07_2, _smallest_nprobe, lambda r, nlist, target=0.95: _smallest_nprobe(r, nlist, target, strict=True)),
    (exercises.check_07_2, _smallest_nprobe, lambda r, nlist, target=0.95: _smallest_nprobe(r, nlist, target, linear=True)),
    # lesson 08
    (exercises.check_08_1, _ridge_map, lambda S, T, ridge=1e-2: _ridge_map(S, T, ridge, centre=False)),
    (exercises.check_08_1, _ridge_map, lambda S, T, ridge=1e-2: _ridge_map(S, T, ridge, times_n=False)),
    (exercises.check_08_2, _choose_k, lambda top10, gt, target=0.95: _choose_k(top10, gt, target, zero_based=True)),
    (exercises.check_08_2, _choose_k, lambda top10, gt, target=0.95: _choose_k(top10, gt, target, over_all=True)),
    # lesson 09
    (exercises.check_09_1, _precision_recall, lambda s, y, n, t: _precision_recall(s, y, n, t, strict=True)),
    (exercises.check_09_1, _precision_recall, lambda s, y, n, t: _precision_recall(s, y, y.sum(), t)),
    (exercises.check_09_2, _groups, lambda pairs, t: _groups(pairs, t, transitive=False)),
    # lesson 06
    (exercises.check_06_1, _stretch, lambda q, train, k=5, factor=2.5: _stretch(q, train, k, factor, top="max")),
    (exercises.check_06_1, _stretch, lambda q, train, k=5, factor=2.5:
        _stretch(q, train, k, factor) / np.linalg.norm(_stretch(q, train, k, factor), axis=1, keepdims=True)),
    (exercises.check_06_2, _isc_score_normalize, lambda q, r, train, n=10, factor=2.0:
        _isc_score_normalize(q, r, train, n, factor, reduction="mean")),
    (exercises.check_06_2, _isc_score_normalize, lambda q, r, train, n=10, factor=2.0:
        _isc_score_normalize(q, r, train, n + 1, factor)),
    # lesson 04
    (exercises.check_04_1, _iou, lambda a, b: _iou(a, b, clamp=False)),
    (exercises.check_04_2, _grid_boxes, lambda w, h, grid=2, overlap=0.25: _grid_boxes(w, h, grid, overlap, shrink=False)),
    # lesson 05
    (exercises.check_05_1, _ratio_test, lambda a, b, ratio=0.8: _ratio_test(a, b, ratio, squared=True)),
    (exercises.check_05_1, _ratio_test, lambda a, b, ratio=0.8: _ratio_test(b, a, ratio)),
    (exercises.check_05_2, _inliers_for, lambda p, w: _inliers_for(p, w, exp=np.exp)),
]


@pytest.mark.parametrize("check, right, wrong", CASES, ids=[c[0].__name__ for c in CASES] if CASES else None)
def test_each_check_passes_the_right_answer_and_fails_a_wrong_one(check, right, wrong):
    check(right)
    with pytest.raises(exercises.ExerciseError):
        check(wrong)
