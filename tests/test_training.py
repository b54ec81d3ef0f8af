import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isc_helpers.core import checkpoints, descriptors, models, train_config
from isc_helpers.core.errors import SettingError
from isc_helpers.core.profile import PROFILES
from isc_helpers.ideas import objectives, training


def test_info_nce_by_hand():
    z = torch.eye(2)
    # each view: partner similarity 1, two others 0 -> CE = log(2 + e) - 1
    assert objectives.info_nce(z, z.clone(), temperature=1.0).item() == pytest.approx(math.log(2 + math.e) - 1, abs=1e-6)
    # swapping partners makes it worse
    assert objectives.info_nce(z, z.flip(0), temperature=1.0) > objectives.info_nce(z, z, temperature=1.0)


def test_koleo_is_minus_log_nearest_distance():
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    z = torch.stack([angles.cos(), angles.sin()], 1)
    assert objectives.koleo(z).item() == pytest.approx(-math.log(math.sqrt(3)), abs=1e-5)
    crowded = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), dim=1)
    assert objectives.koleo(crowded) > objectives.koleo(z)        # crowded points: higher loss


def test_contrastive_margins_and_memory():
    z = torch.eye(4)                                   # negatives sqrt(2) apart > margin 1
    labels = torch.arange(4)
    assert objectives.contrastive(z, z.clone(), labels).item() == pytest.approx(0.0)
    bank = objectives.MemoryBank(size=5, dim=4)
    near = F.normalize(torch.eye(4) + 0.2, dim=1)    # a memory close to the batch, other labels
    bank.add(near, torch.arange(10, 14))
    loss = objectives.contrastive(z, z.clone(), labels, bank)
    assert loss.item() > 0                             # memory negatives inside the margin count
    assert len(bank) == 5                              # capped, newest first
    assert bank.labels[:4].tolist() == [0, 1, 2, 3]


def test_barlow_twins_identity_is_minimal():
    torch.manual_seed(0)
    z = torch.randn(256, 8)
    z = (z - z.mean(0)) / z.std(0)
    same = objectives.barlow_twins(z, z.clone()).item()
    other = objectives.barlow_twins(z, torch.randn(256, 8)).item()
    assert same < 0.1 < other


def test_arcface_margin_makes_it_harder():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(6, 8), dim=1)
    head = objectives.ArcFace(8, 6, margin=0.4, scale=10)
    labels = torch.arange(6)
    with_margin = head(z, labels)
    head.margin = 0.0
    assert with_margin > head(z, labels)


def test_stage_schedule():
    cfg = train_config.TrainConfig(steps=90, sizes=(64, 96, 128), strengths=(0.3, 0.6, 1.0))
    assert [cfg.stage(s) for s in (0, 29, 30, 60, 89)] == [(64, 0.3), (64, 0.3), (96, 0.6), (128, 1.0), (128, 1.0)]
    cfg.progressive = False
    assert cfg.stage(0) == (128, 1.0)


TINY = dict(steps=4, batch_size=6, sizes=(64, 64, 64), n_val=24, val_every=2, ckpt_every=2, workers=0, dim=32)


def test_train_checkpoints_and_resume_exactly(mini, tmp_path):
    cfg = train_config.TrainConfig(objective="contrastive", memory=32, **TINY)
    full = training.train(mini, cfg, tmp_path / "a", device="cpu", progress=False)
    assert full["done"] and [h["step"] for h in full["history"]] == [0, 2, 4]
    # interrupted after 2 steps, then resumed: the same weights as the uninterrupted run
    part = training.train(mini, cfg, tmp_path / "b", device="cpu", progress=False, stop_after=2)
    assert not part["done"] and not (tmp_path / "b" / "model.pt").exists()
    training.train(mini, cfg, tmp_path / "b", device="cpu", progress=False)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    net, cfg2, hist = checkpoints.load_descriptor(tmp_path / "a" / "model.pt")
    assert cfg2.objective == "contrastive" and len(hist) == 3
    # a different configuration refuses to resume from the same folder
    with pytest.raises(ValueError, match="different configuration"):
        training.train(mini, train_config.TrainConfig(objective="sscd", **TINY), tmp_path / "b", device="cpu", progress=False)


@pytest.mark.parametrize("objective", ["sscd", "barlow_twins", "arcface"])
def test_each_objective_trains(mini, tmp_path, objective):
    cfg = train_config.TrainConfig(objective=objective, **dict(TINY, steps=2, val_every=2))
    out = training.train(mini, cfg, tmp_path, device="cpu", progress=False)
    assert np.isfinite(out["history"][-1]["loss"])


def test_torchrun_two_processes(mini, tmp_path):
    """The training command under torchrun: DDP with gloo, 2 CPU processes."""
    env = dict(os.environ, ISC_PROFILE="test", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "isc_helpers.tool.cli", "train", "--out", str(tmp_path / "ddp"), "--steps", "2",
           "--batch-size", "4", "--sizes", "64,64,64", "--dim", "32", "--workers", "0", "--objective", "sscd"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["history"][-1]["step"] == 2
    torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)


def test_default_config_follows_the_profile():
    assert train_config.default_config("test").steps == PROFILES["test"].training["steps"]
    c = train_config.default_config("course", steps=7)
    assert c.steps == 7 and c.objective == "arcface" and c.memory == 0 and c.dim <= 256


def test_photo_training_split_excludes_filler(mini):
    import pandas as pd
    src = pd.read_csv(mini.root / "sources.csv").set_index("image_id").pool_file
    photos = mini.photo_train_ids()
    assert photos and all(src[i].startswith("photos/") for i in photos)
    cfg = train_config.TrainConfig(**TINY)
    tr, va = training.split_training(mini, cfg)
    assert set(tr) | set(va) == set(photos) and not set(tr) & set(va)
    tr_all, va_all = training.split_training(mini, train_config.TrainConfig(**dict(TINY, train_on="all")))
    assert len(tr_all) + len(va_all) == len(mini.train_ids)


def test_example_views_are_pairs(mini):
    pairs = training.example_views(mini, train_config.TrainConfig(**TINY), step=0, n=2)
    assert len(pairs) == 2 and all(len(p) == 2 for p in pairs)


def test_example_batch_is_the_loops_own_batch(mini):
    from isc_helpers.datasets import minidisc
    cfg = train_config.TrainConfig(**dict(TINY, sizes=(48, 56, 64)))
    train_ids, _ = training.split_training(mini, cfg)
    loop = training._Batches(training.load_small(mini, train_ids, cfg.image_side), cfg,
                             minidisc.edit_assets("training"), start=0)
    for step in (0, cfg.steps - 1):
        x1, x2, labels = training.example_batch(mini, cfg, step)
        y1, y2, loop_labels = loop[step]
        assert x1.shape == (cfg.batch_size, 3, cfg.stage(step)[0], cfg.stage(step)[0])
        assert torch.equal(labels, loop_labels) and torch.equal(x1, y1) and torch.equal(x2, y2)


def test_a_finished_run_called_again_keeps_its_model_file(mini, tmp_path):
    cfg = train_config.TrainConfig(**dict(TINY, steps=2))
    training.train(mini, cfg, tmp_path / "r", device="cpu", progress=False)
    before = (tmp_path / "r" / "model.pt").read_bytes()
    again = training.train(mini, cfg, tmp_path / "r", device="cpu", progress=False)
    assert again["done"] and (tmp_path / "r" / "model.pt").read_bytes() == before


def test_score_methods_on_each_dataset(mini):
    from isc_helpers.core import metrics
    table, preds = training.score_methods({"thumb": "thumbnail", "hist": "colour_hist"}, {"a": mini, "b": mini})
    assert list(table.index) == ["thumb", "hist"]
    assert list(table.columns) == ["µAP a", "µAP b", "recall@1 a", "recall@1 b"]
    direct = metrics.evaluate(descriptors.search_dataset(mini, "colour_hist", progress=False)[0], mini.ground_truth())
    assert table.loc["hist", "µAP b"] == direct.uap and table.loc["hist", "recall@1 a"] == direct.recall_at_1
    assert set(preds) == {(m, d) for m in ("thumb", "hist") for d in ("a", "b")}


def test_export_half_precision_roundtrip(mini, tmp_path):
    cfg = train_config.TrainConfig(**dict(TINY, steps=1))
    training.train(mini, cfg, tmp_path / "r", device="cpu", progress=False)
    dst = checkpoints.export_descriptor(tmp_path / "r" / "model.pt", tmp_path / "small.pt", command="x", seed=0)
    net, cfg2, _ = checkpoints.load_descriptor(dst)
    full, _, _ = checkpoints.load_descriptor(tmp_path / "r" / "model.pt")
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(net(x), full(x), atol=2e-2)
    assert checkpoints.provenance(dst) == {"command": "x", "seed": 0}
    with pytest.raises(FileNotFoundError, match="isc-course train"):
        checkpoints.load_descriptor(tmp_path / "nothing.pt")


def test_compatibility_training_pulls_onto_the_old_model(mini, tmp_path):
    """init_from starts from a checkpoint; compat_with adds 1 - cos(new, old) per view."""
    old = str(descriptors.shipped_checkpoint())
    base = dict(steps=8, batch_size=4, sizes=(96,), progressive=False, dim=256, val_every=8, ckpt_every=8, lr=3e-3, head_lr=3e-2,
                n_val=6, workers=0, objective="contrastive", init_from=old)
    training.train(mini, train_config.default_config("test", **base), tmp_path / "plain", progress=False)
    training.train(mini, train_config.default_config("test", **base, compat_with=old, compat_weight=50.0),
              tmp_path / "compat", progress=False)
    net_old = checkpoints.load_descriptor(old)[0]
    images = [mini.load(i) for i in mini.query_ids[:8]]
    x = models.preprocess(images, 96)
    with torch.no_grad():
        t = net_old(x)
        cos = {n: float((checkpoints.load_descriptor(tmp_path / n / "model.pt")[0](x) * t).sum(1).mean()) for n in ("plain", "compat")}
    assert cos["compat"] > cos["plain"], cos
    with pytest.raises(ValueError, match="dimensions"):
        training.train(mini, train_config.default_config("test", **{**base, "dim": 64, "init_from": ""}, compat_with=old),
                  tmp_path / "bad", progress=False)


def test_resume_accepts_checkpoints_written_before_new_settings(mini, tmp_path):
    """A checkpoint whose config lacks a field added later, or holds a removed one at its default,
    still resumes; a real difference is still refused."""
    cfg = train_config.default_config("test", steps=2, batch_size=4, sizes=(96,), val_every=2, ckpt_every=1, n_val=6, workers=0)
    training.train(mini, cfg, tmp_path, progress=False, stop_after=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    old = json.loads(state["config"])
    for field in ("compat_with", "compat_weight", "init_from"):
        old.pop(field)
    old.update(mix="", multires=[])              # settings of experiments since removed, at their defaults
    state["config"] = json.dumps(old)
    torch.save(state, tmp_path / "last.pt")
    out = training.train(mini, cfg, tmp_path, progress=False)
    assert out["done"] and out["step"] == 2
    with pytest.raises(SettingError, match="no longer has"):          # one that used a removed experiment
        train_config.TrainConfig.from_json(json.dumps({**old, "mix": "cutmix"}))
    with pytest.raises(ValueError, match="different configuration"):
        training.train(mini, train_config.default_config("test", steps=3, batch_size=4, sizes=(96,), n_val=6, workers=0),
                  tmp_path, progress=False)


def test_info_nce_memory_adds_negatives_but_never_the_view_itself():
    z = torch.eye(2)
    plain = objectives.info_nce(z, z.clone(), temperature=1.0)
    memory = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)   # copies of the two images
    other = torch.zeros(4, 2, dtype=torch.bool)                           # nothing masked
    assert objectives.info_nce(z, z.clone(), 1.0, memory, other) > plain    # close negatives: harder
    same = torch.tensor([[True, False], [False, True]]).repeat(2, 1)         # rows of the view's own image
    masked = objectives.info_nce(z, z.clone(), 1.0, memory, same)
    # the unmasked memory row is the *other* image (similarity 0): one more term e^0 in each denominator
    assert masked.item() == pytest.approx(math.log(3 + math.e) - 1, abs=1e-6)
    bank = objectives.MemoryBank(size=8, dim=2)
    labels = torch.arange(2)
    objectives.sscd_loss(z, z.clone(), 1.0, 0.0, labels, bank)
    assert len(bank) == 2                                                  # the bank is filled after the loss
    # next batch: the bank's row of the view's own image is left out, the other image's row counts
    assert objectives.sscd_loss(z, z.clone(), 1.0, 0.0, labels, bank).item() == pytest.approx(masked.item(), abs=1e-6)


def test_frozen_blocks_keep_their_imagenet_weights(mini, tmp_path):
    cfg = train_config.TrainConfig(**dict(TINY, steps=2, val_every=2, freeze_blocks=2))
    training.train(mini, cfg, tmp_path, device="cpu", progress=False)
    trained = checkpoints.load_descriptor(tmp_path / "model.pt")[0].backbone
    start = models.efficientnet_lite0(pretrained=True)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert same(trained.conv_stem, start.conv_stem) and same(trained.blocks[:2], start.blocks[:2])
    assert same(trained.bn1, start.bn1)                                   # BatchNorm statistics too
    assert not same(trained.blocks[2:], start.blocks[2:])                 # the rest learns
    with pytest.raises(ValueError, match="stages"):
        training.frozen_modules(checkpoints.build_model(train_config.TrainConfig(pretrained=False)), 99)


def test_validation_by_the_held_out_editor(mini, tmp_path):
    cfg = train_config.TrainConfig(**dict(TINY, steps=2, val_every=2, val_edits="both"))
    entry = training.train(mini, cfg, tmp_path, device="cpu", progress=False)["history"][-1]
    assert entry["val_uap"] == entry["val_uap_transfer"] and "val_uap_augly" in entry
    _, val_ids = training.split_training(mini, cfg)
    a, t = (training.make_validation(mini, val_ids, 0, 128, e) for e in ("augly", "transfer"))
    assert len(a[1]) == len(t[1]) and a[2].equals(t[2])                  # same task, other editor
    assert any(np.asarray(x).shape != np.asarray(y).shape or not np.array_equal(x, y) for x, y in zip(a[1], t[1]))
    with pytest.raises(SettingError, match="val_edits"):
        train_config.TrainConfig(val_edits="gimp").check()


def test_a_run_never_resumes_from_other_starting_weights(tmp_path):
    """A run folder started from one checkpoint refuses to resume after that checkpoint changed."""
    from isc_helpers.core import checkpoints
    cfg = train_config.TrainConfig(pretrained=False, steps=1)
    net = checkpoints.build_model(cfg)
    start = tmp_path / "start.pt"
    checkpoints.save_checkpoint(start, net, None, None, 0, cfg, [])
    run_cfg = train_config.TrainConfig(pretrained=False, steps=1, init_from=str(start))
    checkpoints.save_checkpoint(tmp_path / "last.pt", net, None, None, 1, run_cfg, [])
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert json.loads(state["input_weights"]) == checkpoints.input_weights(run_cfg) != {}
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    checkpoints.save_checkpoint(start, net, None, None, 0, cfg, [])          # the starting weights change
    assert checkpoints.input_weights(run_cfg) != json.loads(state["input_weights"])
    with pytest.raises(ValueError, match="other weights"):
        training._resume(tmp_path / "last.pt", run_cfg, net, None, None)

@pytest.mark.parametrize("setting, value, message", [
    ("steps", 0, "between 1"), ("steps", -5, "between 1"), ("dim", 0, "between 1"), ("dim", 512, "and 256"),
    ("val_every", 0, "between 1"), ("batch_size", 1, "between 2"), ("lr", float("nan"), "finite"),
    ("lr", -0.1, "between"), ("memory", -1, "between 0"), ("n_val", -1, "between 4"),
    ("objective", "triplet", "one of arcface"), ("sizes", (), "one or more numbers"), ("sizes", (8,), "between 32"),
    ("backbone", "nosuchnet", "not a timm model"), ("steps", 2.5, "takes int"), ("pretrained", "yes", "takes bool"),
    ("init_from", "/nonexistent/model.pt", "no checkpoint")])
def test_every_setting_is_checked_before_any_work(setting, value, message):
    cfg = train_config.TrainConfig(**{setting: value})
    with pytest.raises(SettingError, match=message) as err:
        cfg.check()
    assert setting in str(err.value)


def test_the_recipe_of_every_profile_passes_its_own_check():
    for name in PROFILES:
        train_config.default_config(name).check()
    with pytest.raises(SettingError, match="no training setting named mix"):
        train_config.default_config("test", mix="cutmix")
