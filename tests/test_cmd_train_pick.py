"""End to end on the bundled real data: preprocess -> train -> extract / pick -> evaluate.

One small model is trained once per test session (3 micrographs train, the 4th is held out)
and shared. The tests assert a quality floor on the held-out micrograph, exact
reproducibility with a seed, exact resume after an interruption, and clear errors.
"""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

from topazpu_core import cli, datasets, training
from topazpu_core.checkpoint import checkpoint_dir, load_model
from topazpu_core.coordinates import read_coordinates, write_coordinates
from topazpu_core.images import image_name
from topazpu_core.metrics import evaluate, match_picks
from topazpu_core.errors import TopazPuError
from topazpu_core.training import (Micrograph, TrainConfig, Trainer, averaged_weights, averaging_start,
                                    BUNDLED_START_MODEL, cpu_computes_bfloat16, epochs_for, intensity_jitter_for,
                                    label_radius_for, precision_for, shares_for_auto, start_features,
                                    start_model_for, tile_rotation_for)
from topazpu_core.models import Classifier
from topazpu_core.options import LABEL_RADIUS_FEW_LABELS, LABEL_RADIUS_MOST_LABELLED

HELD_OUT = 3  # index of the held-out bundled micrograph
SCALE = 2
RADIUS = datasets.BUNDLED_PARTICLE_DIAMETER / 2  # px of the bundled micrographs
TRAIN_ARGS = ["-n", "200", "--particle-radius", str(RADIUS / SCALE), "--epochs", "8", "--epoch-size", "50",
              "--seed", "3", "--threads", "2", "--no-progress"]


def run(*argv):
    try:
        cli.main([str(a) for a in argv])
    except SystemExit as e:
        if e.code:
            raise


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    mics = datasets.bundled_micrographs()
    run("preprocess", "-s", SCALE, "-o", d / "pre", *mics)
    coords = read_coordinates(datasets.bundled_particles())
    held = image_name(mics[HELD_OUT])
    train = coords.subset(coords.image_name != held).scaled(1 / SCALE)
    write_coordinates(train, str(d / "train.txt"))
    (d / "train_list.txt").write_text("\n".join(str(d / "pre" / (image_name(m) + ".mrc"))
                                                for i, m in enumerate(mics) if i != HELD_OUT) + "\n")
    run("train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt",
        *TRAIN_ARGS, "--val-labels", "0.2", "-o", d / "model.pt")
    return d, held, coords


def test_training_outputs(trained):
    d, _, _ = trained
    meta = json.load(open(d / "model.json"))
    assert meta["scale"] == SCALE and meta["architecture"] == "resnet8"
    # --val-labels 0.2: 20% of the labels held out, their 3 micrographs stay in training
    assert meta["validation"] == "held-out labels (0.2)" and meta["n_val_micrographs"] == 3
    n_labels = meta["n_train_labels"] + meta["val_n_targets"]
    assert n_labels > 400 and meta["val_n_targets"] == round(0.2 * n_labels)
    assert 0 < meta["pi"] < 0.1 and meta["val_ap"] is not None and meta["val_estimate"].startswith("estimated")
    # the threshold picks 1.1 x the expected 200 per micrograph on the 3 validation micrographs
    assert meta["threshold_rule"].startswith("picks 1.1 x the expected 200.0 particles per micrograph")
    assert os.path.getsize(d / "model.training.png") > 1000
    rows = (d / "model.training.tsv").read_text().splitlines()
    assert rows[0].startswith("epoch") and len(rows) == 1 + meta["epochs_trained"]
    assert sorted(os.listdir(checkpoint_dir(str(d / "model.pt"))))[0] == "epoch000.pt"


def test_pick_on_held_out_micrograph_beats_floor(trained, tmp_path):
    d, held, coords = trained
    mic = datasets.bundled_micrographs()[HELD_OUT]
    run("pick", "--model", d / "model.pt", "--threshold=-inf", "--threads", "2", "--no-progress",
        "-o", tmp_path / "all.txt", mic)
    picks = read_coordinates(str(tmp_path / "all.txt"))
    targets = coords.subset(coords.image_name == held)
    result = evaluate(picks, targets, RADIUS)
    # raw frame: coordinates come back x SCALE; measured about 0.6 with these tiny settings
    assert result["ap"] > 0.4, result
    assert picks.x.max() > 500  # original 620 px frame, not the 310 px preprocessed one
    # the auto threshold keeps a sensible number of picks: between a third and 3x the targets
    run("pick", "--model", d / "model.pt", "--threads", "2", "--no-progress", "-o", tmp_path / "auto.star", mic)
    auto = read_coordinates(str(tmp_path / "auto.star"))
    assert len(targets) / 3 < len(auto) < 3 * len(targets)
    assert np.all(auto.score >= load_model(str(d / "model.pt"))[1]["threshold"] - 1e-6)


def test_picks_are_separated_by_the_models_nms_radius(trained, tmp_path):
    d, _, _ = trained
    from topazpu_core.checkpoint import save_model
    from topazpu_core.options import NMS_RADIUS_FACTOR

    model, meta = load_model(str(d / "model.pt"))
    assert meta["nms_radius"] == NMS_RADIUS_FACTOR * meta["particle_radius"] == 1.25 * RADIUS / SCALE
    mic = datasets.bundled_micrographs()[HELD_OUT]

    def nearest_pick(model_path, out):
        run("pick", "--model", model_path, "--threshold=-inf", "--threads", "2", "--no-progress", "-o", out, mic)
        xy = read_coordinates(str(out)).xy
        dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        np.fill_diagonal(dist, np.inf)
        return dist.min(axis=1)

    # raw frame: the model's radius times its scale; every peak kept, so neighbours come close to it
    near = nearest_pick(d / "model.pt", tmp_path / "now.txt")
    assert near.min() > 1.25 * RADIUS and (near <= 1.5 * RADIUS).sum() > 10
    # a model written before the NMS radius was recorded picks at its particle radius, as it was validated
    old = {k: v for k, v in meta.items() if k != "nms_radius"}
    save_model(str(tmp_path / "old.pt"), model, old)
    near_old = nearest_pick(tmp_path / "old.pt", tmp_path / "old.txt")
    assert near_old.min() > RADIUS and (near_old <= 1.25 * RADIUS).sum() > 10


def test_extract_matches_pick_on_preprocessed_images(trained, tmp_path):
    d, held, _ = trained
    # the model's auto threshold: at -t 0 this tiny model keeps no pick at all (0 == 0 proved nothing)
    run("extract", "--model", d / "model.pt", "-x", SCALE, "--threads", "2", "--no-progress",
        "-o", tmp_path / "ex.txt", d / "pre" / (held + ".mrc"))
    run("pick", "--model", d / "model.pt", "--threads", "2", "--no-progress",
        "-o", tmp_path / "pk.txt", datasets.bundled_micrographs()[HELD_OUT])
    ex, pk = read_coordinates(str(tmp_path / "ex.txt")), read_coordinates(str(tmp_path / "pk.txt"))
    # pick fits the normalisation on this one micrograph, preprocess fitted it on all four:
    # the same particles come out at the same places (one preprocessed pixel = SCALE raw px), scores
    # differ slightly; a pick in another frame (not multiplied back, or twice) matches nothing
    assert len(ex) > 50 and abs(len(ex) - len(pk)) <= max(3, 0.1 * len(ex))
    assert match_picks(ex.xy, pk.xy, SCALE).mean() >= 0.9


def test_every_epoch_checkpoint_is_a_model(trained, tmp_path):
    d, held, _ = trained
    meta = json.load(open(d / "model.json"))
    folder = checkpoint_dir(str(d / "model.pt"))
    # with validation too, the model is the mean of the weights of the second half of the epochs
    # (hundreds of labels, 8 x 50 updates: each label is the centre of 8 tiles only after the middle)
    assert meta["averaged_epochs"] == [5, 8] and meta["epochs_trained"] == 8 and meta["val_ap"] is not None
    final, _ = load_model(str(d / "model.pt"))
    mean = averaged_weights(str(d / "model.pt"), 4, 7)
    for k, v in final.state_dict().items():
        assert torch.equal(v, mean[k]), k
    # validation names a best epoch; its checkpoint is a model with its own validated threshold
    best = os.path.join(folder, "epoch%03d.pt" % (meta["best_epoch"] - 1))
    _, cmeta = load_model(best)
    assert cmeta["epoch"] == meta["best_epoch"] and cmeta["threshold"] is not None and cmeta["val_ap"] is not None
    pre = d / "pre" / (held + ".mrc")
    outs = {}
    for name, path in (("final", d / "model.pt"), ("best", best), ("first", os.path.join(folder, "epoch000.pt"))):
        run("extract", "--model", path, "--threshold=-inf", "--threads", "2", "--no-progress",
            "-o", tmp_path / (name + ".txt"), pre)
        outs[name] = read_coordinates(str(tmp_path / (name + ".txt")))
    # three different models: each scores the micrograph its own way
    for a, b in (("final", "best"), ("final", "first"), ("best", "first")):
        assert len(outs[a]) and len(outs[b])
        assert not (len(outs[a]) == len(outs[b]) and np.allclose(outs[a].score, outs[b].score)), (a, b)


def test_mean_weights_start_earlier_with_fewer_labels():
    config = TrainConfig(particle_radius=8.0)  # 100 updates of 8 tiles per epoch: 400 centred on a label
    starts = [averaging_start(20, n, config) for n in (10, 50, 200, 499, 500, 1292)]
    assert starts == [0, 1, 4, 9, 10, 10]  # epochs 1-20, 2-20, 5-20, 10-20, then the second half
    assert averaging_start(10, 200, config) == 4 and averaging_start(1, 200, config) == 0
    # fewer updates per epoch: the labels take more epochs to be seen 8 times each
    assert averaging_start(20, 50, dataclasses.replace(config, epoch_size=25)) == 4
    assert averaging_start(20, 50, dataclasses.replace(config, epoch_size=10, tiles_per_batch=4)) == 10


def test_patience_stops_early_and_keeps_the_best_epoch(trained, tmp_path):
    d, _, _ = trained
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "12"
    args[args.index("--epoch-size") + 1] = "10"
    # seeded: with tiles turned by multiples of 90 degrees ('auto' here, as the labels cover most of
    # -n), the validation AP of these tiny epochs stops rising well before epoch 12 (with any angle
    # it was still rising at epoch 12)
    run(*args, "--val-labels", "0.3", "--patience", "1", "--tile-rotation", "90", "-o", tmp_path / "p.pt")
    final, meta = load_model(str(tmp_path / "p.pt"))
    assert meta["epochs_trained"] < 12 and meta["averaged_epochs"] is None
    assert meta["epoch"] == meta["best_epoch"] and meta["val_ap"] is not None
    best, _ = load_model(os.path.join(checkpoint_dir(str(tmp_path / "p.pt")), "epoch%03d.pt" % (meta["best_epoch"] - 1)))
    for k, v in final.state_dict().items():
        assert torch.equal(v, best.state_dict()[k]), k


def test_seeded_training_is_reproducible_and_resume_is_exact(trained, tmp_path):
    d, _, _ = trained
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "4"
    args[args.index("--epoch-size") + 1] = "10"
    run(*args, "-o", tmp_path / "a.pt")
    run(*args, "-o", tmp_path / "b.pt")
    a, meta = load_model(str(tmp_path / "a.pt"))
    b, _ = load_model(str(tmp_path / "b.pt"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    # no validation (the default): the model is the mean of the weights of epochs 3 and 4 (one round)
    assert meta["averaged_epochs"] == [3, 4] and meta["pseudo_label_share"] == 0
    e3, e4 = (load_model(os.path.join(checkpoint_dir(str(tmp_path / "a.pt")), "epoch%03d.pt" % e))[0].state_dict()
              for e in (2, 3))
    assert not torch.equal(e3["head.weight"], e4["head.weight"])  # the two epochs differ
    for k, v in a.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (e3[k] + e4[k]) / 2, atol=1e-6), k
    # interrupt: drop the last epoch's checkpoint and the final model, then resume
    os.remove(os.path.join(checkpoint_dir(str(tmp_path / "b.pt")), "epoch003.pt"))
    os.remove(tmp_path / "b.pt")
    run(*args, "-o", tmp_path / "b.pt", "--resume")
    c, _ = load_model(str(tmp_path / "b.pt"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k


def test_start_model_starts_the_features_not_the_head(trained, tmp_path, capsys):
    """--start-model: training starts from the trained model's feature layers (its first update
    moves them only a step away), the head from the prior; another architecture is refused."""
    d, _, _ = trained
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "1"
    start, start_meta = load_model(str(d / "model.pt"))
    run(*args, "--start-model", d / "model.pt", "-o", tmp_path / "warm.pt")
    run(*args, "-o", tmp_path / "cold.pt")
    warm, meta = load_model(str(tmp_path / "warm.pt"))
    cold, _ = load_model(str(tmp_path / "cold.pt"))
    key = next(k for k in start.features.state_dict() if k.endswith("weight"))
    w, s0, c = (m.features.state_dict()[key] for m in (warm, start, cold))
    # one Adam step moves each weight by at most about the learning rate (warm-up: lr / 2 here)
    assert (w - s0).abs().max() < 2e-3 < (c - s0).abs().max()
    assert meta["start_model"]["path"] == os.path.abspath(str(d / "model.pt"))
    # the default: no validation, every label trains, the threshold counts on the training micrographs
    assert meta["validation"] == "none" and meta["val_ap"] is None and meta["n_val_micrographs"] == 0
    assert "on the 3 training micrographs (no validation; every pick counted)" in meta["threshold_rule"]
    assert meta["start_model"]["n_train_labels"] == start_meta["n_train_labels"]
    with pytest.raises(SystemExit):
        cli.main([str(a) for a in args] + ["--start-model", str(d / "model.pt"), "--arch", "conv31",
                                           "-o", str(tmp_path / "x.pt")])
    assert "model.pt: --start-model is a resnet8" in capsys.readouterr().err


def test_start_model_auto_is_the_bundled_model_while_the_labels_are_few():
    """'auto' starts from the bundled resnet8 (trained on the three development proteins) while the
    labels cover less than half of pi, and only for a resnet8 with 32 units; 'none' and a path are
    taken as given."""
    pi = 0.02
    assert start_model_for("auto", "resnet8", 32, pi, 0.0099) == BUNDLED_START_MODEL
    assert start_model_for("auto", "resnet8", 32, pi, 0.0100) is None  # half of pi: most particles labelled
    assert start_model_for("auto", "conv31", 32, pi, 0.001) is None
    assert start_model_for("auto", "resnet8", 64, pi, 0.001) is None
    assert start_model_for("none", "resnet8", 32, pi, 0.001) is None
    assert start_model_for("x/model.pt", "conv31", 16, pi, 0.5) == "x/model.pt"
    model, meta = load_model(BUNDLED_START_MODEL)
    assert (meta["architecture"], meta["units"]) == ("resnet8", 32) and model.architecture == "resnet8"
    # its training, as the README states it: every labelled micrograph of the three data sets
    assert meta["n_train_micrographs"] == 28 and meta["n_train_labels"] == 1953 + 6202 + 413
    assert meta["start_model"] is None and meta["built_by"] == "benchmarks/build_start_model.py"
    assert os.path.getsize(BUNDLED_START_MODEL) < 1_000_000


def test_a_starting_model_for_another_particle_size_is_warned_about(monkeypatch):
    """The bundled model learned particles of radius 7.69 px on average: one of 7 px starts quietly,
    one of 16 px (2.08 x) is warned about, with the preprocessing scale factor that would match."""
    warnings = []
    monkeypatch.setattr(training.logger, "warning", lambda msg, *args: warnings.append(msg % args))
    model = Classifier("resnet8", units=32)
    info = start_features(model, BUNDLED_START_MODEL, particle_radius=7.0)
    assert not warnings and info["particle_radius"] == pytest.approx(7.69)
    start_features(model, BUNDLED_START_MODEL, particle_radius=16.0)
    assert len(warnings) == 1 and "radius 7.69 px (15 px across); these are 16 px, 2.08 x" in warnings[0]
    assert "Preprocess at about 2.08 x the current scale" in warnings[0]


def test_label_radius_auto_follows_the_labelled_share_and_small_radii_are_warned_about(monkeypatch):
    """'auto': 2 px while the labels cover less than half the expected particles, 3 px from half
    on; a number as given; anything else refused. resnet8 scores a 4 px grid in training: 2 px (half
    the stride) marks the grid point nearest a labelled centre in 13 of the 16 offsets of a tile and
    starts quietly; 1 px (a 5 px disk) marks one in 5 / 16 = 31 % of the tiles only, which is said."""
    rng = np.random.default_rng(0)
    image = np.zeros((200, 200), np.float32)
    micrographs = [Micrograph("m", image, rng.uniform(20, 180, 10), rng.uniform(20, 180, 10))]
    few = TrainConfig(particle_radius=8.0, n_per_micrograph=21, start_model="none", precision="float32")
    most = dataclasses.replace(few, n_per_micrograph=19)  # the 10 labels cover just over half
    assert few.label_radius == "auto"
    assert label_radius_for("auto", *shares_for_auto(few, micrographs)) == LABEL_RADIUS_FEW_LABELS == 2
    assert label_radius_for("auto", *shares_for_auto(most, micrographs)) == LABEL_RADIUS_MOST_LABELLED == 3
    assert label_radius_for(5, None, None) == 5.0
    with pytest.raises(TopazPuError, match="label radius 'wide'"):
        label_radius_for("wide", None, None)
    with pytest.raises(TopazPuError, match="label radius 'wide'"):
        shares_for_auto(dataclasses.replace(few, label_radius="wide"), micrographs)
    warnings = []
    monkeypatch.setattr(training.logger, "warning", lambda msg, *args: warnings.append(msg % args))
    trainer = Trainer(few, micrographs, [])
    assert trainer.config.label_radius == 2 and trainer.label_radius_asked == "auto" and not warnings
    Trainer(dataclasses.replace(few, label_radius=1), micrographs, [])
    assert len(warnings) == 1 and "label radius 1 px < stride 4 / 2" in warnings[0]
    assert "in only 31 % of the training tiles; use --label-radius 2 or more" in warnings[0]


def test_few_labels_start_from_the_bundled_model_by_default(trained, tmp_path):
    """The CLI's default (--start-model auto) with 30 labels for -n 200: the features start from the
    bundled model (recorded in MODEL.json with what was asked); --start-model none: random weights."""
    d, _, coords = trained
    few = read_coordinates(str(d / "train.txt"))
    few = few.subset(np.arange(len(few)) % (len(few) // 30) == 0)
    write_coordinates(few, str(tmp_path / "few.txt"))
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", tmp_path / "few.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "1"
    run(*args, "-o", tmp_path / "auto.pt")
    run(*args, "--start-model", "none", "-o", tmp_path / "none.pt")
    auto, meta = load_model(str(tmp_path / "auto.pt"))
    cold, cold_meta = load_model(str(tmp_path / "none.pt"))
    assert meta["start_model_asked"] == "auto" and meta["start_model"]["path"] == BUNDLED_START_MODEL
    assert cold_meta["start_model_asked"] == "none" and cold_meta["start_model"] is None
    assert meta["label_radius_asked"] == "auto" and meta["label_radius"] == 2  # the labels are few
    bundled, _ = load_model(BUNDLED_START_MODEL)
    key = next(k for k in bundled.features.state_dict() if k.endswith("weight"))
    w, b, c = (m.features.state_dict()[key] for m in (auto, bundled, cold))
    assert (w - b).abs().max() < 2e-3 < (c - b).abs().max()


def test_every_particle_labelled_trains_as_pn(trained, tmp_path, capsys):
    """Labels covering the expected positive fraction (-n at or below the labels per micrograph, as
    when every particle of a few micrographs is labelled) leave GE no positive among the unlabelled
    pixels: the run trains as PN, says so, and the model records both objectives."""
    d, _, coords = trained
    per_micrograph = len(read_coordinates(str(d / "train.txt"))) / 3
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("-n") + 1] = "%.0f" % (0.8 * per_micrograph)
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "2"
    run(*args, "-o", tmp_path / "full.pt")
    meta = json.load(open(tmp_path / "full.json"))
    assert meta["method"] == "GE-binomial" and meta["objective_trained"] == "PN" and meta["pi_unlabelled"] is None
    assert meta["labelled_fraction"] >= meta["pi"]
    assert "every expected particle is labelled, so GE-binomial trains as PN" in capsys.readouterr().err
    assert json.load(open(d / "model.json"))["objective_trained"] == "GE-binomial"  # -n 200: labels ~150
    # 'auto' jitters the tiles only while the labels cover less than half the expected particles
    assert meta["intensity_jitter"] == "auto" and meta["intensity_jitter_applied"] == 0.0
    assert json.load(open(d / "model.json"))["intensity_jitter_applied"] == 0.0  # ~150 of 200 labelled


def test_background_ring_is_recorded_and_leaves_ge_its_target(trained, tmp_path):
    """--background-ring labels the ring around each label out to the NMS radius as background:
    the model records its radius and share of the pixels, and GE's target among the unlabelled
    pixels leaves those pixels out. Off by default."""
    d, _, _ = trained
    plain = json.load(open(d / "model.json"))
    assert plain["background_ring"] is False and plain["background_radius"] == 0 and plain["background_fraction"] == 0
    lab = plain["labelled_fraction"]
    assert plain["pi_unlabelled"] == pytest.approx((plain["pi"] - lab) / (1 - lab), rel=1e-9)
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "1"
    run(*args, "--background-ring", "-o", tmp_path / "ring.pt")
    meta = json.load(open(tmp_path / "ring.json"))
    assert meta["background_ring"] is True and meta["background_radius"] == pytest.approx(1.25 * RADIUS / SCALE)
    lab, bg = meta["labelled_fraction"], meta["background_fraction"]
    assert 5 * lab < bg < 20 * lab  # (1.25 r)^2 / 3^2 - 1 disks' worth, less overlaps and edges
    assert meta["pi_unlabelled"] == pytest.approx((meta["pi"] - lab) / (1 - lab - bg), rel=1e-9)
    history = open(tmp_path / "ring.training.tsv").readline().split()
    assert "background" in history  # the background term's mean is logged per epoch


def test_tile_rotation_is_recorded_and_checked(trained, tmp_path):
    """'auto' by default, which turns the tiles by multiples of 90 degrees when, as here, the
    labels cover most of -n; --tile-rotation any turns them by any angle; both are recorded
    (asked for and applied); another value is refused."""
    d, _, _ = trained
    plain = json.load(open(d / "model.json"))
    assert plain["labelled_fraction"] > plain["pi"] / 2
    assert plain["tile_rotation"] == "auto" and plain["tile_rotation_applied"] == "90"
    assert plain["label_radius_asked"] == "auto" and plain["label_radius"] == 3  # most are labelled
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "1"
    run(*args, "--tile-rotation", "any", "-o", tmp_path / "any.pt")
    meta = json.load(open(tmp_path / "any.json"))
    assert meta["tile_rotation"] == "any" and meta["tile_rotation_applied"] == "any"
    with pytest.raises(SystemExit):
        run(*args, "--tile-rotation", "45", "-o", tmp_path / "bad.pt")
    micrographs = [Micrograph("m", np.zeros((64, 64), np.float32), np.array([30.0]), np.array([30.0]))]
    with pytest.raises(TopazPuError, match="tile rotation"):
        Trainer(TrainConfig(particle_radius=4.0, n_per_micrograph=5, tile_rotation="45"), micrographs, [])


def test_tile_rotation_auto_follows_the_labelled_share():
    """'auto': any angle while the labels cover less than half the expected positive fraction, 90
    degrees from half on; 'any' and '90' as given."""
    pi = 0.05
    assert [tile_rotation_for("auto", pi, share * pi) for share in (0.01, 0.14, 0.49, 0.5, 0.88)] == \
        ["any", "any", "any", "90", "90"]
    assert tile_rotation_for("any", pi, 0.9 * pi) == "any" and tile_rotation_for("90", pi, 0.01 * pi) == "90"


def test_precision_is_recorded_checked_and_close_to_float32(trained, tmp_path):
    """'auto' by default: bfloat16 feature layers on a CPU with bfloat16 instructions, else float32
    (and float32 on a GPU); both recorded (asked for and applied); another value is refused. The
    bfloat16 network computes the float32 one's loss to within 1 % on the same tiles, not exactly."""
    d, _, _ = trained
    plain = json.load(open(d / "model.json"))
    expected = "bfloat16" if cpu_computes_bfloat16() else "float32"
    assert plain["precision"] == "auto" and plain["precision_applied"] == expected
    assert precision_for("auto", "cpu") == expected and precision_for("auto", "cuda") == "float32"
    assert precision_for("float32", "cpu") == "float32" and precision_for("bfloat16", "cuda") == "bfloat16"
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--epoch-size") + 1] = "1"
    run(*args, "--precision", "float32", "-o", tmp_path / "f32.pt")
    assert json.load(open(tmp_path / "f32.json"))["precision_applied"] == "float32"
    with pytest.raises(SystemExit):
        run(*args, "--precision", "float16", "-o", tmp_path / "bad.pt")
    rng = np.random.default_rng(0)
    image = rng.normal(size=(300, 300)).astype(np.float32)
    micrographs = [Micrograph("m", image, rng.uniform(40, 260, 20), rng.uniform(40, 260, 20))]
    with pytest.raises(TopazPuError, match="precision"):
        Trainer(TrainConfig(particle_radius=4.0, n_per_micrograph=40, precision="half"), micrographs, [])
    losses = []
    for precision in ("float32", "bfloat16"):
        trainer = Trainer(TrainConfig(particle_radius=4.0, n_per_micrograph=40, precision=precision), micrographs, [])
        assert trainer.precision == precision
        losses.append([trainer.step(np.random.default_rng(1))["loss"] for _ in range(3)])
    assert losses[1] != losses[0]  # computed in bfloat16 indeed
    np.testing.assert_allclose(losses[1], losses[0], rtol=0.01)


def test_epochs_auto_follows_the_labelled_share_and_is_recorded(trained, tmp_path, capsys):
    """--epochs auto (the default): 20 while the labels cover less than half the expected positive
    fraction, 30 from half on (the bundled labels cover most of -n); the value asked for is recorded;
    a number is taken as given and anything else refused."""
    pi = 0.05
    assert [epochs_for("auto", pi, share * pi) for share in (0.01, 0.49, 0.5, 0.88)] == [20, 20, 30, 30]
    assert epochs_for("12", pi, 0.01 * pi) == 12 and epochs_for(7, pi, 0.9 * pi) == 7
    for bad in ("0", 0, -3, "2.5", 2.5, "many", None, True):
        with pytest.raises(TopazPuError, match="epochs"):
            epochs_for(bad, pi, 0.9 * pi)
    d, _, _ = trained
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    i = args.index("--epochs")
    del args[i:i + 2]
    args[args.index("--epoch-size") + 1] = "1"
    run(*args, "-o", tmp_path / "auto.pt")
    meta = json.load(open(tmp_path / "auto.json"))
    assert meta["labelled_fraction"] > meta["pi"] / 2
    assert meta["epochs_asked"] == "auto" and meta["epochs"] == 30 and meta["epochs_trained"] == 30
    with pytest.raises(SystemExit):
        run(*args, "--epochs", "ten", "-o", tmp_path / "bad.pt")
    assert "epochs 'ten'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad.pt")


def test_intensity_jitter_auto_follows_the_labelled_share():
    """'auto': 0.2 while the labels cover less than half the expected positive fraction (50 or 200
    sparse labels), 0 from half on (every particle of a few micrographs labelled); numbers as given."""
    pi = 0.05
    assert [intensity_jitter_for("auto", pi, share * pi) for share in (0.01, 0.14, 0.49, 0.5, 0.88, 1.2)] == \
        [0.2, 0.2, 0.2, 0.0, 0.0, 0.0]
    assert intensity_jitter_for(0.1, pi, 0.9 * pi) == 0.1 and intensity_jitter_for(0, pi, 0.01 * pi) == 0.0
    for bad in ("strong", None):
        with pytest.raises(TopazPuError, match="intensity jitter"):
            intensity_jitter_for(bad, pi, 0.01 * pi)


def test_pseudo_labels_train_a_second_model_on_the_first_ones_picks(trained, tmp_path):
    """--pseudo-labels F: round 1 on the labels (MODEL.round1.pt), then the model on the labels plus
    F x (expected - labelled) of round 1's best picks per micrograph, none at a label; --resume
    after the first round does not train it again."""
    d, _, _ = trained
    args = ["train", "--train-images", d / "train_list.txt", "--train-targets", d / "train.txt", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--epoch-size") + 1] = "10"
    run(*args, "--pseudo-labels", "0.5", "-o", tmp_path / "st.pt")
    first, first_meta = load_model(str(tmp_path / "st.round1.pt"))
    _, meta = load_model(str(tmp_path / "st.pt"))
    labels = read_coordinates(str(d / "train.txt"))
    assert first_meta["n_train_labels"] == len(labels) and first_meta["pseudo_labels"] == 0
    assert meta["pseudo_labels"] == 0.5 and meta["first_round_model"] == "st.round1.pt"
    # the 2 epochs are shared: one in each round
    assert first_meta["epochs_trained"] == 1 and meta["epochs_trained"] == 1
    assert meta["n_pseudo_labels"] > 0 and meta["n_train_labels"] == len(labels) + meta["n_pseudo_labels"]
    # the pseudo-labels themselves: the first model's best picks away from the labels
    from topazpu_core.sampling import disk_pixels
    from topazpu_core.training import load_micrographs, pseudo_labels
    mics, _ = load_micrographs(str(d / "train_list.txt"), str(d / "train.txt"))
    disk = disk_pixels(first_meta["label_radius"])
    expected = [first_meta["pi"] * m.image.shape[0] * m.image.shape[1] / disk for m in mics]  # 200 each
    extra = pseudo_labels(first, mics, expected, 0.5, first_meta["particle_radius"], first_meta["edge_margin"])
    assert sum(len(e) for e in extra) == meta["n_pseudo_labels"]
    for m, e, n in zip(mics, extra, expected):  # 3 micrographs, -n 200, about 150 labelled on each
        assert 0 < len(e) <= round(0.5 * (n - len(m.x)))
        dist = np.hypot(e[:, None, 0] - m.x[None], e[:, None, 1] - m.y[None]).min(axis=1)
        assert dist.min() > first_meta["particle_radius"]  # none at a label
    # the threshold counts every pick of the final model on the training micrographs
    from topazpu_core.training import Micrograph, validate
    final, _ = load_model(str(tmp_path / "st.pt"))
    plain = [Micrograph(m.name, m.image, np.zeros(0), np.zeros(0)) for m in mics]
    count = validate(final, plain, meta["particle_radius"], meta["edge_margin"], expected=expected)["threshold_count"]
    assert abs(count - meta["threshold"]) < 1e-6 and "every pick counted" in meta["threshold_rule"]
    # resume with round 1 written: only round 2 runs again (the first model file is not rewritten)
    stamp = os.path.getmtime(tmp_path / "st.round1.pt")
    before = load_model(str(tmp_path / "st.pt"))[0].state_dict()
    os.remove(tmp_path / "st.pt")
    run(*args, "--pseudo-labels", "0.5", "-o", tmp_path / "st.pt", "--resume")
    assert os.path.getmtime(tmp_path / "st.round1.pt") == stamp
    again = load_model(str(tmp_path / "st.pt"))[0].state_dict()
    assert all(torch.equal(v, again[k]) for k, v in before.items())


def test_training_errors_are_clear(trained, tmp_path, capsys):
    d, _, _ = trained
    bad = tmp_path / "bad.txt"
    bad.write_text("image_name\tx_coord\ty_coord\nnot_a_micrograph\t10\t10\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--train-images", str(d / "train_list.txt"), "--train-targets", str(bad),
                  *TRAIN_ARGS, "-o", str(tmp_path / "m.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "not_a_micrograph" in err
    outside = tmp_path / "outside.txt"  # real micrograph names, every particle off the image
    outside.write_text("image_name\tx_coord\ty_coord\n" + "".join(
        "%s\t-500\t-500\n" % image_name(p) for p in open(d / "train_list.txt").read().split()))
    with pytest.raises(SystemExit):
        cli.main(["train", "--train-images", str(d / "train_list.txt"), "--train-targets", str(outside),
                  *TRAIN_ARGS, "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert "outside.txt" in err and "no labelled particle" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--train-images", str(d / "train_list.txt"), "--train-targets", str(d / "train.txt"),
                  "--pi", "1.5", *TRAIN_ARGS[2:], "-o", str(tmp_path / "m.pt")])
    assert "(0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--train-images", str(d / "train_list.txt"), "--train-targets", str(d / "train.txt"),
                  "--intensity-jitter", "strong", *TRAIN_ARGS, "-o", str(tmp_path / "m.pt")])
    assert "--intensity-jitter 'strong'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--train-images", str(d / "train_list.txt"), "--train-targets", str(d / "train.txt"),
                  "--label-radius", "60", *TRAIN_ARGS, "-o", str(tmp_path / "m.pt")])
    assert "receptive field" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(SystemExit):
        cli.main(["extract", "--model", str(junk), "-o", str(tmp_path / "x.txt"), datasets.bundled_micrographs()[0]])
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_request_without_cuda_is_a_clear_error(trained, tmp_path, capsys):
    d, _, _ = trained
    with pytest.raises(SystemExit) as e:
        cli.main(["pick", "--model", str(d / "model.pt"), "-d", "0", "-o", str(tmp_path / "x.txt"),
                  datasets.bundled_micrographs()[0]])
    assert e.value.code == 2 and "no usable CUDA" in capsys.readouterr().err
