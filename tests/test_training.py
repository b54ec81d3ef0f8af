import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isc_helpers import checkpoints, descriptors, models, objectives, training


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
    cfg = checkpoints.TrainConfig(steps=90, sizes=(64, 96, 128), strengths=(0.3, 0.6, 1.0))
    assert [cfg.stage(s) for s in (0, 29, 30, 60, 89)] == [(64, 0.3), (64, 0.3), (96, 0.6), (128, 1.0), (128, 1.0)]
    cfg.progressive = False
    assert cfg.stage(0) == (128, 1.0)


TINY = dict(steps=4, batch_size=6, sizes=(64, 64, 64), n_val=24, val_every=2, ckpt_every=2, workers=0, dim=32)


def test_train_checkpoints_and_resume_exactly(mini, tmp_path):
    cfg = checkpoints.TrainConfig(objective="contrastive", memory=32, **TINY)
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
        training.train(mini, checkpoints.TrainConfig(objective="sscd", **TINY), tmp_path / "b", device="cpu", progress=False)


@pytest.mark.parametrize("objective", ["sscd", "barlow_twins", "arcface"])
def test_each_objective_trains(mini, tmp_path, objective):
    cfg = checkpoints.TrainConfig(objective=objective, **dict(TINY, steps=2, val_every=2))
    out = training.train(mini, cfg, tmp_path, device="cpu", progress=False)
    assert np.isfinite(out["history"][-1]["loss"])


def test_torchrun_two_processes(mini, tmp_path):
    """The training command under torchrun: DDP with gloo, 2 CPU processes."""
    env = dict(os.environ, ISC_PROFILE="test", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "isc_helpers.cli", "train", "--out", str(tmp_path / "ddp"), "--steps", "2",
           "--batch-size", "4", "--sizes", "64,64,64", "--dim", "32", "--workers", "0", "--objective", "sscd"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["history"][-1]["step"] == 2
    torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)


def test_default_config_follows_the_profile():
    assert checkpoints.default_config("test").steps == checkpoints.PROFILE_TRAINING["test"]["steps"]
    c = checkpoints.default_config("course", steps=7)
    assert c.steps == 7 and c.objective == "arcface" and c.memory == 0 and c.dim <= 256


def test_photo_training_split_excludes_filler(mini):
    import pandas as pd
    src = pd.read_csv(mini.root / "sources.csv").set_index("image_id").pool_file
    photos = mini.photo_train_ids()
    assert photos and all(src[i].startswith("photos/") for i in photos)
    cfg = checkpoints.TrainConfig(**TINY)
    tr, va = training.split_training(mini, cfg)
    assert set(tr) | set(va) == set(photos) and not set(tr) & set(va)
    tr_all, va_all = training.split_training(mini, checkpoints.TrainConfig(**dict(TINY, train_on="all")))
    assert len(tr_all) + len(va_all) == len(mini.train_ids)


def test_example_views_are_pairs(mini):
    pairs = training.example_views(mini, checkpoints.TrainConfig(**TINY), step=0, n=2)
    assert len(pairs) == 2 and all(len(p) == 2 for p in pairs)


def test_export_half_precision_roundtrip(mini, tmp_path):
    cfg = checkpoints.TrainConfig(**dict(TINY, steps=1))
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
    training.train(mini, checkpoints.default_config("test", **base), tmp_path / "plain", progress=False)
    training.train(mini, checkpoints.default_config("test", **base, compat_with=old, compat_weight=50.0),
              tmp_path / "compat", progress=False)
    net_old = checkpoints.load_descriptor(old)[0]
    images = [mini.load(i) for i in mini.query_ids[:8]]
    x = models.preprocess(images, 96)
    with torch.no_grad():
        t = net_old(x)
        cos = {n: float((checkpoints.load_descriptor(tmp_path / n / "model.pt")[0](x) * t).sum(1).mean()) for n in ("plain", "compat")}
    assert cos["compat"] > cos["plain"], cos
    with pytest.raises(ValueError, match="dimensions"):
        training.train(mini, checkpoints.default_config("test", **{**base, "dim": 64, "init_from": ""}, compat_with=old),
                  tmp_path / "bad", progress=False)


def test_resume_accepts_checkpoints_written_before_new_settings(mini, tmp_path):
    """A checkpoint whose config lacks a field added later (at its default) still resumes;
    a real difference is still refused."""
    cfg = checkpoints.default_config("test", steps=2, batch_size=4, sizes=(96,), val_every=2, ckpt_every=1, n_val=6, workers=0)
    training.train(mini, cfg, tmp_path, progress=False, stop_after=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    old = json.loads(state["config"])
    for field in ("compat_with", "compat_weight", "init_from"):
        old.pop(field)
    state["config"] = json.dumps(old)
    torch.save(state, tmp_path / "last.pt")
    out = training.train(mini, cfg, tmp_path, progress=False)
    assert out["done"] and out["step"] == 2
    with pytest.raises(ValueError, match="different configuration"):
        training.train(mini, checkpoints.default_config("test", steps=3, batch_size=4, sizes=(96,), n_val=6, workers=0),
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
    cfg = checkpoints.TrainConfig(**dict(TINY, steps=2, val_every=2, freeze_blocks=2))
    training.train(mini, cfg, tmp_path, device="cpu", progress=False)
    trained = checkpoints.load_descriptor(tmp_path / "model.pt")[0].backbone
    start = models.efficientnet_lite0(pretrained=True)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert same(trained.conv_stem, start.conv_stem) and same(trained.blocks[:2], start.blocks[:2])
    assert same(trained.bn1, start.bn1)                                   # BatchNorm statistics too
    assert not same(trained.blocks[2:], start.blocks[2:])                 # the rest learns
    with pytest.raises(ValueError, match="stages"):
        training.frozen_modules(checkpoints.build_model(checkpoints.TrainConfig(pretrained=False)), 99)


def test_validation_by_the_held_out_editor(mini, tmp_path):
    cfg = checkpoints.TrainConfig(**dict(TINY, steps=2, val_every=2, val_edits="both"))
    entry = training.train(mini, cfg, tmp_path, device="cpu", progress=False)["history"][-1]
    assert entry["val_uap"] == entry["val_uap_transfer"] and "val_uap_augly" in entry
    _, val_ids = training.split_training(mini, cfg)
    a, t = (training.make_validation(mini, val_ids, 0, 128, e) for e in ("augly", "transfer"))
    assert len(a[1]) == len(t[1]) and a[2].equals(t[2])                  # same task, other editor
    assert any(np.asarray(x).shape != np.asarray(y).shape or not np.array_equal(x, y) for x, y in zip(a[1], t[1]))
    with pytest.raises(ValueError, match="val_edits"):
        training.val_editors(checkpoints.TrainConfig(val_edits="gimp"))


def test_a_run_never_resumes_from_other_starting_weights(tmp_path):
    """A run folder started from one checkpoint refuses to resume after that checkpoint changed."""
    from isc_helpers import checkpoints
    cfg = checkpoints.TrainConfig(pretrained=False, steps=1)
    net = checkpoints.build_model(cfg)
    start = tmp_path / "start.pt"
    checkpoints.save_checkpoint(start, net, None, None, 0, cfg, [])
    run_cfg = checkpoints.TrainConfig(pretrained=False, steps=1, init_from=str(start))
    checkpoints.save_checkpoint(tmp_path / "last.pt", net, None, None, 1, run_cfg, [])
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert json.loads(state["input_weights"]) == checkpoints.input_weights(run_cfg) != {}
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    checkpoints.save_checkpoint(start, net, None, None, 0, cfg, [])          # the starting weights change
    assert checkpoints.input_weights(run_cfg) != json.loads(state["input_weights"])
    with pytest.raises(ValueError, match="other weights"):
        training._resume(tmp_path / "last.pt", run_cfg, net, None, None)


def test_cutmix_pastes_a_partner_and_weights_the_labels_by_area():
    cfg = checkpoints.TrainConfig(mix="cutmix", mix_prob=0.5, seed=3)
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 32, 32).contiguous()   # image j = value j
    out, partner, own = training.mix_views(x, cfg, step=5)
    again = training.mix_views(x, cfg, step=5)
    assert all(torch.equal(a, b) for a, b in zip((out, partner, own), again))          # seeded
    mixed = own < 1
    assert 0 < mixed.sum() < 8                                                          # about half the views
    assert torch.equal(out[~mixed], x[~mixed]) and torch.equal(partner[~mixed], torch.arange(8)[~mixed])
    for j in torch.nonzero(mixed).flatten().tolist():
        k = partner[j].item()
        assert k != j
        pasted = ((out[j, 0] - k).abs() < 1e-4).float().mean().item()                  # the partner's pixels
        assert pasted == pytest.approx(1 - own[j].item(), abs=1e-6)
        assert 0.05 <= pasted <= 0.55
        assert (((out[j, 0] - j).abs() < 1e-4) | ((out[j, 0] - k).abs() < 1e-4)).all()   # nothing else
    assert not training.mix_views(x, checkpoints.TrainConfig(), step=5)[2].lt(1).any()  # off by default


def test_mixup_blends_and_the_arcface_loss_follows_both_labels():
    cfg = checkpoints.TrainConfig(mix="mixup", mix_prob=1.0, dim=8)
    x = torch.randn(6, 3, 16, 16)
    out, partner, own = training.mix_views(x, cfg, step=0)
    assert ((own >= 0.5) & (own <= 0.8)).all()
    j, k = 0, partner[0].item()
    assert torch.allclose(out[j], own[j] * x[j] + (1 - own[j]) * x[k], atol=1e-6)
    objective = objectives.Objective(cfg, n_classes=10)
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(6, 8), dim=1), F.normalize(torch.randn(6, 8), dim=1)
    labels = torch.tensor([4, 9, 0, 7, 2, 5])            # class ids, not batch positions
    unmixed = objective(z1, z2, labels)
    assert objective(z1, z2, labels, (torch.arange(6), torch.ones(6))).item() == pytest.approx(unmixed.item())
    head, partner = objective.arcface, torch.tensor([1, 2, 3, 4, 5, 0])
    others = torch.tensor([9, 0, 7, 2, 5, 4])             # the partners' classes, by hand
    expected = 0.5 * (head(z1, labels) + (0.25 * head(z2, labels, "none") + 0.75 * head(z2, others, "none")).mean())
    got = objective(z1, z2, labels, (partner, torch.full((6,), 0.25)))
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)


def test_mixing_needs_arcface_and_trains(mini, tmp_path):
    with pytest.raises(ValueError, match="arcface"):
        training.train(mini, checkpoints.TrainConfig(objective="sscd", mix="cutmix", **TINY), tmp_path / "a",
                       device="cpu", progress=False)
    with pytest.raises(ValueError, match="between 0 and 1"):
        training.check_mix(checkpoints.TrainConfig(mix="cutmix", mix_prob=1.5))
    with pytest.raises(ValueError, match="mix must be one of"):
        training.check_mix(checkpoints.TrainConfig(mix="blend"))
    cfg = checkpoints.TrainConfig(objective="arcface", mix="cutmix", mix_prob=1.0, **dict(TINY, steps=2, val_every=2))
    out = training.train(mini, cfg, tmp_path / "b", device="cpu", progress=False)
    assert np.isfinite(out["history"][-1]["loss"])


def test_imprint_starts_each_class_at_its_image_and_resumes_exactly(mini, tmp_path):
    cfg = checkpoints.TrainConfig(objective="arcface", arcface_init="imprint", **dict(TINY, steps=4))
    train_ids, _ = training.split_training(mini, cfg)
    images = training._load_small(mini, train_ids[:5], cfg.image_side)
    net, _, objective = training._networks(cfg, len(images), "cpu")
    training.imprint_classes(net, objective, images, 64, "cpu")
    z = models.embed_images(net, images, 64, device="cpu")
    assert np.allclose(objective.arcface.weight.detach().numpy(), z, atol=1e-6)
    cos = F.normalize(torch.from_numpy(z)) @ F.normalize(objective.arcface.weight.detach()).T
    assert torch.equal(cos.argmax(1), torch.arange(5))              # every image nearest its own class
    # a resumed run keeps its trained class centres (no second imprint): the same weights as one run
    training.train(mini, cfg, tmp_path / "a", device="cpu", progress=False)
    training.train(mini, cfg, tmp_path / "b", device="cpu", progress=False, stop_after=2)
    training.train(mini, cfg, tmp_path / "b", device="cpu", progress=False)
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True)["model"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="arcface_init"):
        training.check_config(checkpoints.TrainConfig(objective="sscd", arcface_init="imprint"))
    with pytest.raises(ValueError, match="arcface_init"):
        training.check_config(checkpoints.TrainConfig(arcface_init="zeros"))


def test_harder_training_edits_favour_the_weak_families_and_leave_the_default_alone():
    from isc_helpers import augment
    rng_a, rng_b = np.random.RandomState(0), np.random.RandomState(0)
    plain = [augment.sample_recipe(rng_a) for _ in range(3000)]
    hard = [augment.sample_recipe(rng_b, **training.TRAIN_EDITS["augly-hard"]) for _ in range(3000)]
    share = lambda recipes: np.mean([any(f in training.WEAK_FAMILIES for f, _ in r) for r in recipes])
    assert share(hard) > share(plain) + 0.15                    # 3x their weight: clearly more often
    assert max(map(len, plain)) == 3 and max(map(len, hard)) == 4
    assert all(0.2 * 0.99 <= s <= 1.0 for r in hard for _, s in r)     # as strong as ever, not beyond
    # a boost of 1 changes nothing: the default ("augly") draws exactly lesson 01's recipes
    assert training.TRAIN_EDITS["augly"] == dict(max_edits=3, boost=None)
    ones = {f: 1.0 for f in training.WEAK_FAMILIES}
    assert [augment.sample_recipe(np.random.RandomState(s)) for s in range(50)] == \
        [augment.sample_recipe(np.random.RandomState(s), boost=ones) for s in range(50)]
    with pytest.raises(ValueError, match="edits must be one of"):
        training.check_config(checkpoints.TrainConfig(edits="transfer"))


def test_interpolated_backbone_runs_from_the_imagenet_start_to_the_trained_net():
    cfg = checkpoints.default_config("test", pretrained=False, seed=3)
    torch.manual_seed(3)
    net = checkpoints.build_model(cfg).eval()            # random weights: far from ImageNet's
    net.backbone.bn1.num_batches_tracked.fill_(7)
    start = models.efficientnet_lite0(pretrained=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    start_before = {k: v.clone() for k, v in start.state_dict().items()}
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(training.interpolate_backbone(net, 1.0, start)(x), net(x), atol=1e-6)
        half = training.interpolate_backbone(net, 0.5, start)
        zero = training.interpolate_backbone(net, 0.0, checkpoints.build_model(checkpoints.default_config("test")))
    for key in ("conv_stem.weight", "bn1.running_var", "blocks.3.0.bn2.running_mean"):
        mid = (start.state_dict()[key] + before["backbone." + key]) / 2
        assert torch.allclose(half.backbone.state_dict()[key], mid, atol=1e-6), key
        assert torch.equal(zero.backbone.state_dict()[key], start.state_dict()[key]), key  # a whole net as start
    counter = half.backbone.bn1.num_batches_tracked
    assert counter.dtype == torch.long and int(counter) == 7          # integer buffers stay the trained ones
    assert torch.equal(zero.proj.weight, net.proj.weight)             # the projection stays the trained one
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())          # inputs untouched
    assert all(torch.equal(v, start_before[k]) for k, v in start.state_dict().items())
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must be between 0"):
            training.interpolate_backbone(net, bad, start)
    other = checkpoints.build_model(checkpoints.default_config("test", backbone="resnet18", pretrained=False))
    with pytest.raises(ValueError, match="pass start="):
        training.interpolate_backbone(net, 0.5, other)


def test_refreshed_batchnorm_statistics_are_the_images_own(mini):
    net = checkpoints.build_model(checkpoints.default_config("test")).eval()
    images = training._load_small(mini, mini.train_ids[:8], 128)
    x = models.preprocess(images, 96)
    first = net.backbone.bn1
    with torch.no_grad():
        stem = net.backbone.conv_stem(x)                             # what bn1 sees
    training.refresh_batchnorm(net, images, 96, batch_size=8)
    assert torch.allclose(first.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-4)
    assert not net.training and first.momentum == 0.1
    with pytest.raises(ValueError, match="needs some images"):
        training.refresh_batchnorm(net, [], 96)


def test_multires_draws_each_steps_size_from_the_list_and_trains(mini, tmp_path):
    cfg = checkpoints.default_config("test", multires=(64, 96, 128), steps=4, val_every=2, ckpt_every=2, seed=5)
    sizes = [cfg.train_size(s) for s in range(300)]
    assert set(sizes) == {64, 96, 128} and min(sizes.count(v) for v in (64, 96, 128)) > 60
    assert sizes == [cfg.train_size(s) for s in range(300)]              # (seed, step) decide it
    assert checkpoints.default_config("test").train_size(3) == checkpoints.default_config("test").stage(3)[0]
    batch = training._Batches(training._load_small(mini, mini.train_ids[:20], 256), cfg,
                              training.minidisc.edit_assets("training"), start=0)
    assert [batch[s][0].shape[-1] for s in range(4)] == [cfg.train_size(s) for s in range(4)]
    assert sizes != [checkpoints.default_config("test", multires=(64, 96, 128), seed=6).train_size(s)
                     for s in range(300)]
    first = training.train(mini, cfg, tmp_path / "run", progress=False, stop_after=2)
    out = training.train(mini, cfg, tmp_path / "run", progress=False)       # resumes the multires run
    assert not first["done"] and out["done"] and out["step"] == 4
    assert checkpoints.load_descriptor(tmp_path / "run" / "model.pt")[1].multires == (64, 96, 128)
    for bad in ((8,), (96.0,), (True,), 96, None):
        with pytest.raises(ValueError, match="multires holds input sizes"):
            training.check_config(checkpoints.default_config("test", multires=bad))
