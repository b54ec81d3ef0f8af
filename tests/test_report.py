"""report.html of a copy search: isc_helpers.tool.report, on tiny images made here, and the page opened,
labelled and exported in headless Chromium (the browser check of tests/test_browser.py: same browser,
same skip)."""
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pathlib import Path

from isc_helpers.tool import report
from helpers import picture
from test_browser import headless_chromium

EVIL = "x<script>alert(1)</script>.png"       # a subfolder "x<script>alert(1)<" holding "script>.png"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cache"))


def _images(root, n: int) -> list[str]:
    names = [f"img_{i:03d}.jpg" for i in range(n - 1)] + [EVIL]
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        picture(i, (400, 240)).save(root / name)              # blocks of colour: detail to describe
    return names


def _pairs(names: list[str], n_pairs: int) -> pd.DataFrame:
    rows = [(names[i % len(names)], names[(i + 1) % len(names)], (i * 7919 % n_pairs) / n_pairs)
            for i in range(n_pairs)]
    pairs = pd.DataFrame(rows, columns=["query", "reference", "score"])
    return pairs.assign(decision=["copy" if s >= 0.5 else "not copy" for s in pairs.score], stage="global")


def _write(tmp_path, n_pairs: int, page_size: int = 100, **kw):
    root = tmp_path / "photos"
    root.mkdir(parents=True)
    names = _images(root, 6)
    pairs = _pairs(names, n_pairs)
    out = report.write_report(pairs, lambda side, image_id: root / image_id, tmp_path / "out" / "report.html",
                              title="Test <report>", page_size=page_size, threshold=0.5, **kw)
    return pairs, out, out.read_text(encoding="utf-8")


def test_rows_thumbnails_sorted_and_header(tmp_path):
    pairs, out, text = _write(tmp_path, 12)
    assert out.name == "report.html" and text.startswith("<!DOCTYPE html>")
    assert text.count("<tr class=") == 12
    cells = re.findall(r'<td class="img"><div class="th (t\d+)"', text)
    uris = dict(re.findall(r"\.(t\d+)\{background-image:url\((data:image/jpeg;base64,[^)]*)\)\}", text))
    assert len(cells) == 24 and set(cells) == set(uris) and len(uris) == 6      # each image embedded once
    assert "http://" not in text and "https://" not in text                   # self-contained
    scores = [float(s) for s in re.findall(r"</div></td><td class=\"name\">[^<]*</td><td>([0-9.e+-]+)</td>", text)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 12
    n_copy = int((pairs.decision == "copy").sum())
    assert f"12 candidate pair(s); <b>{n_copy}</b> decided copy (score at least 0.5" in text
    assert "Test &lt;report&gt;" in text


def test_thumbnails_are_small(tmp_path):
    import base64
    import io
    _, _, text = _write(tmp_path, 3)
    src = re.search(r"url\(data:image/jpeg;base64,([^)]*)\)", text).group(1)
    im = Image.open(io.BytesIO(base64.b64decode(src)))
    assert im.format == "JPEG" and max(im.size) == report.THUMB_SIDE


def test_a_thousand_pairs_fit_in_a_few_megabytes(tmp_path):
    """~1,000 pairs over 600 distinct photos (as a folder of ~1,200 images gives), 40 with a
    matched-region picture: the page stays under 5 MB."""
    from isc_helpers.datasets.dataset import load_pool
    photos = load_pool().files("textures")[:600]
    rng = np.random.RandomState(0)
    pairs = pd.DataFrame({"query": [str(photos[i]) for i in rng.randint(0, 600, 1000)],
                          "reference": [str(photos[i]) for i in rng.randint(0, 600, 1000)], "score": rng.rand(1000)})
    text = report.render_report(pairs, lambda side, i: Path(i), threshold=0.9)
    assert len(text.encode()) < 5e6, f"{len(text.encode()) / 1e6:.1f} MB"


def test_file_names_are_escaped(tmp_path):
    _, _, text = _write(tmp_path, 12)
    assert "<script>alert" not in text
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;.png" in text
    assert text.count("<script>") == 1                                         # the report's own script


def test_paging_and_cap(tmp_path):
    _, _, text = _write(tmp_path, 250, page_size=100)
    assert text.count('<section class="page"') == 3
    assert text.count(" hidden>") == 2 and text.count('<nav class="pager">') == 2
    sections = re.findall(r'<section class="page".*?</section>', text, flags=re.S)
    assert [s.count("<tr class=") for s in sections] == [100, 100, 50]
    capped = _write(tmp_path / "capped", 30, page_size=10, max_pairs=25)[2]
    assert capped.count("<tr class=") == 25 and "Only the top 25 of 30 pairs" in capped


def test_unreadable_image_and_no_decision(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    pairs = pd.DataFrame({"query": ["bad.jpg"], "reference": ["gone.png"], "score": [0.9]})
    out = report.write_report(pairs, lambda side, i: tmp_path / i, tmp_path / "r.html", threshold=0.5)
    text = out.read_text()
    assert text.count("cannot be read") == 2 and "<b>1</b> decided copy" in text
    with pytest.raises(ValueError, match="threshold"):
        report.render_report(pairs, lambda side, i: tmp_path / i)


def test_report_renders_labels_and_exports_in_chromium(tmp_path):
    """The page in a real browser: thumbnails drawn, pages switch, two rows labelled by clicks, the
    labels exported as labels.csv (the file --labels reads), and a screenshot that shows pictures."""
    pairs, out, _ = _write(tmp_path, 150, page_size=100)
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(out.as_uri())
        assert page.locator("section.page:visible tbody tr").count() == 100
        thumb = page.locator("section.page:visible div.th").first
        assert "data:image/jpeg" in thumb.evaluate("e => getComputedStyle(e).backgroundImage")
        rows = page.locator("section.page:visible tbody tr")
        rows.nth(0).locator("button[data-l='copy']").click()
        rows.nth(1).locator("button[data-l='not copy']").click()
        assert page.locator("#export").inner_text() == "Export labels (2)"
        with page.expect_download() as got:
            page.locator("#export").click()
        saved = tmp_path / "labels.csv"
        got.value.save_as(saved)
        page.locator("nav.pager").first.locator("button", has_text="2").click()
        assert page.locator("section.page:visible tbody tr").count() == 50
        shot = tmp_path / "report.png"
        page.screenshot(path=os.environ.get("ISC_BROWSER_SCREENSHOT") or str(shot), full_page=False)
        assert not errors, f"errors in the page: {errors[:3]}"
    labels = pd.read_csv(saved, keep_default_na=False)
    top = pairs.sort_values("score", ascending=False, kind="stable").head(2)
    assert labels.values.tolist() == [[top["query"].iloc[0], top["reference"].iloc[0], "yes"],
                                      [top["query"].iloc[1], top["reference"].iloc[1], "no"]]
    pixels = np.asarray(Image.open(os.environ.get("ISC_BROWSER_SCREENSHOT") or shot).convert("L"), float)
    assert pixels.std() > 20, "the screenshot is blank"


def test_cli_writes_report_next_to_pairs(tmp_path, capsys):
    from isc_helpers.tool import cli
    folder = tmp_path / "photos"
    folder.mkdir()
    names = _images(folder, 4)
    (folder / "sub").mkdir()
    Image.open(folder / names[0]).resize((200, 120)).save(folder / "sub" / "copy of img_000.png")
    out = tmp_path / "out"
    args = ["find-copies", str(folder), "--method", "phash", "--out", str(out)]
    assert cli.main(args) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    text = (out / "report.html").read_text()
    assert text.count("<tr class=") == len(pd.read_csv(out / "pairs.csv")) > 0
    assert "sub/copy of img_000.png" in text and "x&lt;script&gt;" in text and "<script>alert" not in text
    for f in ("pairs.csv", "groups.csv"):
        (out / f).unlink()
    assert cli.main(args) == 2                                   # an earlier report alone is not replaced
    assert "report.html" in capsys.readouterr().err and not (out / "pairs.csv").exists()
    assert cli.main(args + ["--overwrite"]) == 0


def _photo_and_crop(root):
    """A pool photo and a copy of it (a crop, shrunk), and an unrelated photo."""
    from isc_helpers.datasets.dataset import load_pool
    photos = sorted(load_pool().files("train_photos"))
    im = Image.open(photos[0]).convert("RGB")
    im.save(root / "photo.jpg")
    w, h = im.size
    im.crop((w // 5, h // 6, w * 4 // 5, h * 5 // 6)).resize((w // 2, h // 2)).save(root / "crop.jpg")
    Image.open(photos[len(photos) // 2]).convert("RGB").save(root / "other.jpg")


def test_match_picture_outlines_the_region_of_a_copy(tmp_path):
    from isc_helpers.tool import match_picture
    _photo_and_crop(tmp_path)
    copy = match_picture.match_picture(tmp_path / "crop.jpg", tmp_path / "photo.jpg")
    other = match_picture.match_picture(tmp_path / "other.jpg", tmp_path / "photo.jpg")
    assert copy.region and copy.inliers >= 3 * match_picture.MIN_INLIERS, copy
    assert not other.region and other.inliers < match_picture.MIN_INLIERS, other
    assert copy.image.height == match_picture.SIDE and "keypoints agree" in copy.caption()
    # the outline is drawn in the region colour; the unrelated pair has none
    colour = np.asarray(match_picture._REGION)
    n_outline = [int((np.abs(np.asarray(p.image, int) - colour).sum(2) < 30).sum()) for p in (copy, other)]
    assert n_outline[0] > 100 and n_outline[1] == 0, n_outline


def test_report_pictures_only_pairs_decided_copy(tmp_path):
    _photo_and_crop(tmp_path)
    pairs = pd.DataFrame({"query": ["crop.jpg", "other.jpg"], "reference": ["photo.jpg", "photo.jpg"],
                          "score": [0.9, 0.2]})
    text = report.render_report(pairs, lambda side, i: tmp_path / i, threshold=0.5)
    assert text.count('<td class="why"><img') == 1 and "keypoints agree on one geometry" in text
    assert report.render_report(pairs, lambda side, i: tmp_path / i, threshold=0.5,
                                match_pictures=0).count('<td class="why"><img') == 0


def test_cli_labels_calibrate_and_to_label_is_never_replaced(tmp_path, capsys):
    from isc_helpers.tool import cli
    from isc_helpers.datasets.dataset import load_pool
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    photos = sorted(load_pool().files("train_photos"))[::40][:5]
    names = [f"img_{i:03d}.jpg" for i in range(len(photos))]
    for name, src in zip(names, photos):
        Image.open(src).convert("RGB").save(folder / name)
    Image.open(folder / names[0]).resize((200, 120)).save(folder / "sub" / "copy of img_000.png")
    out = tmp_path / "out"
    base = ["find-copies", str(folder), "--method", "phash", "--out", str(out)]
    assert cli.main(base + ["--threshold", "0.5"]) == 0
    to_label = pd.read_csv(out / "to_label.csv", keep_default_na=False)
    assert list(to_label.columns) == ["query", "reference", "score", "copy"] and (to_label["copy"] == "").all()
    assert len(to_label) == min(40, len(pd.read_csv(out / "pairs.csv")))
    is_copy = [{a, b} == {names[0], "sub/copy of img_000.png"} for a, b in zip(to_label["query"], to_label["reference"])]
    assert any(is_copy) and not all(is_copy)
    to_label["copy"] = ["yes" if c else "no" for c in is_copy]
    to_label.to_csv(out / "to_label.csv", index=False)                  # the user fills it in
    capsys.readouterr()
    assert cli.main(base + ["--labels", str(out / "to_label.csv"), "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert f"{len(to_label)} pairs you labelled (1 copies)" in said
    assert pd.read_csv(out / "to_label.csv", keep_default_na=False)["copy"].tolist() == to_label["copy"].tolist()
    pairs = pd.read_csv(out / "pairs.csv")
    decided = pairs[pairs.decision == "copy"]
    assert len(decided) == 1 and {decided["query"].iloc[0], decided["reference"].iloc[0]} == {names[0], "sub/copy of img_000.png"}
    assert cli.main(base + ["--labels", str(out / "to_label.csv"), "--threshold", "0.5", "--overwrite"]) == 2
    labelled_pairs = pd.read_csv(out / "pairs.csv").assign(copy="no")        # labels written into an output file
    labelled_pairs.to_csv(out / "pairs.csv", index=False)
    capsys.readouterr()
    assert cli.main(base + ["--labels", str(out / "pairs.csv"), "--overwrite"]) == 2
    assert "would be replaced by this run's output" in capsys.readouterr().err
    assert "copy" in pd.read_csv(out / "pairs.csv").columns                  # the labels were not lost
