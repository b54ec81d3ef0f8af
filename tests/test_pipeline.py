"""The pipeline command `isc-course run` (lesson 07): end to end on mini-DISC and on a
DISC21-layout folder, resumable sharded extraction, torchrun sharding, clear errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isc_helpers.core import descriptors, formats, metrics, search
from isc_helpers.datasets import dataset
from isc_helpers.tool import cli, pipeline, run


def _disc21_folder(mini, root: Path, n_refs: int, n_queries: int, n_train: int, keep_copies: bool = False) -> Path:
    """A folder in the official DISC21 layout, made from the first images of the test mini-DISC
    (``keep_copies``: the references of the copies among those queries come first)."""
    gt = mini.ground_truth()
    gt = gt[gt.query_id.isin(mini.query_ids[:n_queries])].copy()
    refs = list(dict.fromkeys([r for r in gt.reference_id if r] if keep_copies else []))
    refs = (refs + [r for r in mini.reference_ids if r not in refs])[:n_refs]
    for sub, ids in (("references", refs), ("dev_queries", mini.query_ids[:n_queries]),
                     ("train", mini.train_ids[:n_train])):
        (root / sub).mkdir()
        for i in ids:
            shutil.copyfile(mini.image_path(i), root / sub / f"{i}.jpg")
    gt.loc[~gt.reference_id.isin(refs), "reference_id"] = ""
    gt.to_csv(root / "dev_ground_truth.csv", index=False)
    return root


@pytest.fixture(scope="module")
def disc21_folder(mini, tmp_path_factory):
    """A small folder in the official DISC21 layout, made from the test mini-DISC."""
    return _disc21_folder(mini, tmp_path_factory.mktemp("disc21"), 60, 40, 30)


@pytest.fixture(scope="module")
def tiny(mini, tmp_path_factory):
    """The smallest collection that still exercises every stage of every pipeline: 12 queries
    (some copies), 30 references, 30 training images (enough for a tuning set)."""
    return dataset.open_folder(_disc21_folder(mini, tmp_path_factory.mktemp("tiny"), 30, 12, 30, keep_copies=True))


def test_run_on_minidisc_writes_official_files(mini, tmp_path):
    rc = cli.main(["run", "--data", str(mini.root), "--method", "thumbnail", "--out", str(tmp_path)])
    assert rc == 0
    preds = formats.read_predictions(tmp_path / "predictions.csv")
    assert len(preds) == 10 * len(mini.query_ids)
    q, qids, r, rids = formats.read_descriptors(tmp_path / "descriptors.h5")
    assert q.shape == (len(mini.query_ids), 256) and qids == sorted(mini.query_ids)
    summary = json.loads((tmp_path / "summary.json").read_text())
    m = json.loads((tmp_path / "metrics.json").read_text())
    x = descriptors.for_dataset(mini, "thumbnail", "query", progress=False)
    y = descriptors.for_dataset(mini, "thumbnail", "reference", progress=False)
    want = metrics.evaluate(search.search(x.x, x.ids, y.x, y.ids, k=10), mini.ground_truth()).uap
    assert m["uAP"] == pytest.approx(want)                 # the same number lesson 02's path gives
    assert {"extract", "search", "write"} <= set(summary["stage_seconds"])
    # outputs are never overwritten silently
    assert cli.main(["run", "--data", str(mini.root), "--method", "thumbnail", "--out", str(tmp_path)]) == 2
    assert cli.main(["run", "--data", str(mini.root), "--method", "thumbnail", "--out", str(tmp_path),
                     "--overwrite"]) == 0


def test_run_on_disc21_layout_with_hashes_and_normalization(disc21_folder, tmp_path):
    ds = dataset.open_folder(disc21_folder)
    assert ds.name.startswith("DISC21") and len(ds.train_ids) == 30
    s = run.run_pipeline(ds, "phash", tmp_path / "p", progress=False)
    assert "descriptors" not in s["outputs"] and "bits" in s["notes"][0]
    s = run.run_pipeline(ds, "trained+norm", tmp_path / "n", progress=False)
    q, _, r, _ = formats.read_descriptors(tmp_path / "n" / "descriptors.h5")
    why = [n for n in s["notes"] if n.startswith("normalization:")]
    assert len(why) == 1 and 0 <= s["metrics"]["uAP"] <= 1
    if "raw scores are kept" in why[0]:              # 30 training images rarely fit a chain that helps
        assert q.shape[1] == 256
    else:                                            # whitening fitted on 30 images keeps at most 29 dims (+1)
        assert q.shape[1] <= 30 and any("only 30 training images" in n for n in s["notes"])
    # the same folders given one by one
    ds2 = dataset.from_folders(disc21_folder / "dev_queries", disc21_folder / "references")
    with pytest.raises(dataset.DatasetError, match="training"):
        run.run_pipeline(ds2, "trained+norm", tmp_path / "x", progress=False)


def test_sharded_extraction_resumes(mini, tmp_path):
    full = descriptors.extract_sharded(mini, "thumbnail", "query", tmp_path, shard_size=30, progress=False)
    shards = sorted((tmp_path / "thumbnail-query").glob("shard-*.npz"))
    assert len(shards) == int(np.ceil(len(mini.query_ids) / 30))
    shards[1].unlink()                                      # an interrupted run: one shard missing
    stamp = shards[0].stat().st_mtime_ns
    again = descriptors.extract_sharded(mini, "thumbnail", "query", tmp_path, shard_size=30, progress=False)
    assert np.array_equal(full.x, again.x) and again.ids == mini.query_ids
    assert shards[0].stat().st_mtime_ns == stamp            # finished shards are not redone
    # shards of the queries renamed as if they were the references' shards: described again
    shutil.copytree(tmp_path / "thumbnail-query", tmp_path / "thumbnail-reference")
    r = descriptors.extract_sharded(mini, "thumbnail", "reference", tmp_path, shard_size=30, progress=False)
    assert np.allclose(r.x, descriptors.for_dataset(mini, "thumbnail", "reference", progress=False).x)


def test_clear_errors(tmp_path, capsys):
    assert cli.main(["run", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["run", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a mini-DISC folder" in capsys.readouterr().err
    assert cli.main(["run", "--out", str(tmp_path / "o")]) == 2
    assert cli.main(["methods"]) == 0
    assert "trained+sift" in capsys.readouterr().out


def test_torchrun_shards_extraction_across_two_processes(mini, tmp_path):
    """Two CPU processes under torchrun each write their shards; both read the merged set."""
    script = tmp_path / "extract.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from isc_helpers.core import descriptors\nfrom isc_helpers.datasets import dataset\n"
        f"ds = dataset.open_folder({str(mini.root)!r})\n"
        f"x = descriptors.extract_sharded(ds, 'thumbnail', 'reference', {str(tmp_path / 'out')!r}, shard_size=25, progress=False)\n"
        "import os; np.save(f\"{sys.argv[1]}/rank{os.environ['RANK']}.npy\", x.x)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ISC_CACHE_DIR": str(tmp_path / "empty-cache")}  # really extract
    torchrun = Path(sys.executable).parent / "torchrun"
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    single = descriptors.for_dataset(mini, "thumbnail", "reference", progress=False, cache=False).x
    assert np.array_equal(a, b) and np.allclose(a, single)
    shards = sorted((tmp_path / "out" / "thumbnail-reference").glob("shard-*.npz"))
    assert len(shards) == len(mini.reference_ids) // 25
    assert not (tmp_path / "empty-cache" / "descriptors").exists()   # computed, not read from a cache


@pytest.mark.parametrize("method", ["trained+localglobal", "trained+sift", "best"])
def test_verified_pipelines_end_to_end(tiny, tmp_path, method):
    """The course pipelines beyond one descriptor through the command, on the smallest collection
    that has every stage: each stage they record is declared in their Pipeline (per query or per
    collection), and the stage that gives the final score ran."""
    s = run.run_pipeline(tiny, method, tmp_path, progress=False)
    preds = formats.read_predictions(tmp_path / "predictions.csv")
    assert len(preds) <= 10 * len(tiny.query_ids) and "descriptors" not in s["outputs"]
    assert s["bytes_per_reference"] >= 256 * 4 and s["seconds_per_query"] > 0     # a descriptor (+ keypoints)
    pipe = pipeline.PIPELINES[method]
    assert set(s["stage_seconds"]) - {"extract", "write"} <= set(pipe.stages), "a stage the Pipeline does not declare"
    final = {"sift": "SIFT: verification", "local-global": "local-global: search"}[pipe.final_stage]
    assert final in s["stage_seconds"]
    assert s["metrics"]["uAP"] == pytest.approx(metrics.evaluate(preds, tiny.ground_truth()).uap)
    if pipe.final_stage == "sift":
        assert preds.score.between(0, 1).all()               # the evidence model's probabilities


def test_descriptor_track_scoring_is_exact_l2_with_a_global_budget(mini, tmp_path):
    rng = np.random.default_rng(3)
    q, r = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(90, 8)).astype(np.float32)
    qids, rids = [f"Q{i:05d}" for i in range(40)], [f"R{i:06d}" for i in range(90)]
    got = search.descriptor_track(q, qids, r, rids, budget=150, block=7)
    d2 = ((q[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).sum(-1)       # by hand: every pair
    want = np.sort(-d2.ravel())[::-1][:150]
    assert len(got) == 150 and np.allclose(got.score.to_numpy(), want, atol=1e-4)
    assert got.groupby("query_id").size().max() > 10          # a global budget, not k per query
    with pytest.raises(formats.FormatError, match="dimension|descriptors"):
        search.descriptor_track(q[:, :4], qids, r, rids)


def test_run_reports_the_descriptor_track_score_of_its_hdf5(mini, tmp_path):
    rc = cli.main(["run", "--data", str(mini.root), "--method", "trained+norm", "--out", str(tmp_path)])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    q, qids, r, rids = formats.read_descriptors(tmp_path / "descriptors.h5")
    want = metrics.evaluate(search.descriptor_track(q, qids, r, rids), mini.ground_truth()).uap
    assert m["uAP (descriptor track)"] == pytest.approx(want)
    assert cli.main(["evaluate", str(tmp_path / "descriptors.h5"), str(mini.gt_path)]) == 0
