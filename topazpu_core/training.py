"""Training a PU particle classifier: configuration, the step-driven loop, validation, checkpoints.

One epoch = `epoch_size` Adam steps on dense tile minibatches (sampling.TileSampler); `fit`
trains `epochs_for` of them (20 with few labels, 30 with most particles labelled). Every
epoch is checkpointed so `resume=True` continues exactly: the sampler's random stream for epoch e
is seeded by (seed, e), so an interrupted epoch replays identically. Each checkpoint also holds
that epoch's model metadata, so `pick`/`extract` can use it. The final model is the mean of the
weights of the later epochs (`finish`, from `averaging_start`: the second half from 500 labels
on, more of the epochs with fewer labels), with or without validation. With
validation, each epoch also picks the validation micrographs (score, NMS, match, AP at the
particle radius; picks at the NMS radius `pick` uses by default, options.NMS_RADIUS_FACTOR x the
particle radius) for the training curve and its best epoch (the latest one within the AP's
sampling noise of the highest, `keeps_epoch`: a checkpoint a user may pick with by hand), and
the final model is validated the same way for its AP estimate and threshold. Early stopping is
off unless `patience` is given: it stops after `patience` epochs without a kept epoch, and
then the best epoch is the model. Chosen on held-out halves (benchmarks/epoch_choice.py: an
epoch chosen on half the fully labelled validation micrographs, scored on the other half;
apoferritin and beta-galactosidase, 2 seeds each): the mean weights score 0.006 AP above the
kept epoch on average (+0.011, +0.008, +0.009, -0.005), and the highest-AP epoch is no better
than the kept one.

Self-training (`fit` with `pseudo_labels` = f > 0, off by default): a first round trains on the
labels alone; its highest-scoring picks on each training micrograph away from the labels, f x
(expected particles - labels there) of them, are added to the labels and a second round trains
a new network from the start on both. With few labels this is where PU learning gains most: the
first model ranks the particles it has never seen well enough that its top picks are mostly
particles, and the second model learns from ten to twenty times more examples. Measured
(benchmarks/README.md, f = 0.8, AP on micrographs never trained on): apoferritin 50 labels
0.667 against 0.630 in one round (3 seeds), but beta-galactosidase 50 labels 0.731 against 0.774
(seed 0; -0.02 over 3 seeds and -0.035 at 500 labels with the averaging of epochs 11-20), hence
not a default.

Validation with sparse labels. The validation labels may be as sparse as the training ones:
held-out micrographs with a few of their particles labelled, or held-out LABELS on the
training micrographs themselves (`label_holdout`; picks at the labels trained on are left out
of the score, as the particles they mark were seen). Assumed: the validation labels are a
uniform random sample of the particles (not, e.g., only the easy ones), and the expected
particles per micrograph (-n, or pi) is right. Then the recall of the validation labels
estimates the true recall and precision is estimated from it and the expected count
(metrics.py), so the validation AP is an estimate of the AP on densely labelled micrographs
(exact when the labels are complete). The suggested threshold needs no labels at all: the
score above which the model picks AUTO_PICKS_PER_PARTICLE (1.1) x the expected number of
particles on the validation micrographs (`threshold_for_count`), or on the training micrographs
without validation. Every pick counts, those at the labels trained on included. Leaving them
and their particles out of the count (the rule until 5 December 2026) set the threshold far too
high when every particle of the training micrographs is labelled: apoferritin trained on all
1,292 labels of 9 micrographs then picked 0.54 x the particles of new micrographs (F1 0.593);
counting them, 1.09 x (F1 0.703, best 0.708). With 200 or 500 sparse labels the two rules pick
within 4 % of each other, and counting them gives an F1 0.001-0.005 higher (apoferritin and
beta-galactosidase, 3 seeds each, the same models; benchmarks/README.md).
"""
import dataclasses
import logging
import math
import os
import time
from typing import List, Optional, Union

import numpy as np
import torch
from scipy.spatial import cKDTree

from topazpu_core import __version__
from topazpu_core.atomic import atomic_write
from topazpu_core.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint, load_model, save_checkpoint,
                                     save_model)
from topazpu_core.coordinates import Coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.losses import autoencoder_loss, background_loss, pu_objective
from topazpu_core.options import (AUTO_PICKS_PER_PARTICLE, EPOCHS_FEW_LABELS, EPOCHS_MOST_LABELLED,
                                  LABEL_RADIUS_FEW_LABELS, LABEL_RADIUS_MOST_LABELLED, OBJECTIVES, PRECISIONS,
                                  TILE_ROTATIONS, nms_radius_for)
from topazpu_core.models import Classifier, Decoder
from topazpu_core.progress import progress_bar
from topazpu_core.sampling import (BACKGROUND, POSITIVE, UNLABELLED, TileSampler, disk_pixels,
                                   label_centred_tiles, label_pixel_counts, pi_from_particles,
                                   unlabelled_positive_fraction)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Micrograph:
    name: str
    image: np.ndarray  # preprocessed, 2-D float32 (or a memory map)
    x: np.ndarray  # labelled centres (columns)
    y: np.ndarray  # labelled centres (rows)
    # validation only: (N, 2) x, y of labels trained on (picks there are left out of the score)
    known: Optional[np.ndarray] = None


@dataclasses.dataclass
class TrainConfig:
    particle_radius: float  # px of the training images: validation matching; NMS at nms_radius_for(it)
    method: str = "GE-binomial"
    architecture: str = "resnet8"
    units: int = 32
    label_radius: Union[str, float] = "auto"  # px of the training images, or 'auto': label_radius_for
    n_per_micrograph: Optional[float] = None
    pi: Optional[float] = None
    slack: Optional[float] = None  # GE weight; None -> 10 for GE-KL, 1 for GE-binomial
    autoencoder: float = 0.0
    nnpu_beta: float = 0.0
    nnpu_gamma: float = 1.0
    learning_rate: float = 1e-3  # peak; cosine decay to 1% over all epochs after a short warm-up
    tile_size: Optional[int] = None  # None -> receptive field + 24 strides
    tiles_per_batch: int = 8
    intensity_jitter: Union[str, float] = "auto"  # a number, or 'auto': see intensity_jitter_for
    background_ring: bool = False  # the ring around each label out to the NMS radius is background
    tile_rotation: str = "auto"  # training tiles turned by "any" angle, or "90": multiples of 90 degrees only
    precision: str = "auto"  # of the feature layers in training: "float32", "bfloat16"; see precision_for
    epochs: Union[str, int] = "auto"  # in all (with self-training, half in each round), or 'auto': epochs_for
    epoch_size: int = 100
    patience: Optional[int] = None  # early stop after this many epochs without a kept epoch; None = off
    edge_margin: Optional[float] = None  # px; None -> half the particle radius (annotators skip cut particles)
    seed: int = 0
    threads: Optional[int] = None
    scale: float = 1.0  # preprocessing downsampling of the training images (recorded)
    normalization: str = "gmm"
    start_model: str = "auto"  # a trained model whose feature layers start this training, "none", or "auto"
    pseudo_labels: float = 0.0  # self-training (fit): share of the expected particles not labelled; 0 = off


def learning_rate_at(step, total_steps, peak):
    """Linear warm-up over the first 2% of steps, then cosine decay from `peak` to 1% of it."""
    warmup = max(1, total_steps // 50)
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def edge_margin_of(config):
    return config.particle_radius / 2 if config.edge_margin is None else config.edge_margin


def autoencoder_weight(value, n_labels):
    """'auto' -> 10 / N for N <= 250 labelled particles (the paper's choice), else 0."""
    if value == "auto":
        return 10.0 / n_labels if n_labels <= 250 else 0.0
    return float(value)


def expected_counts(pi, label_radius, micrographs):
    """Expected particles on each micrograph: pi x its pixels / labelled pixels per particle
    (-n on micrographs the size of the training ones)."""
    disk = disk_pixels(label_radius)
    return [pi * m.image.shape[0] * m.image.shape[1] / disk for m in micrographs]


def micrographs_from(images, coords: Coordinates, source="targets"):
    """Pair images {name: array} with their coordinates -> list of Micrograph (all images kept)."""
    by_image = coords.by_image()
    unknown = sorted(set(by_image) - set(images))
    if unknown:
        import difflib
        near = difflib.get_close_matches(unknown[0], list(images), n=3)
        raise TopazPuError("%s: %d image names match no micrograph, e.g. %s%s" % (
            source, len(unknown), ", ".join(unknown[:5]), " (nearest: %s)" % ", ".join(near) if near else ""))
    out = []
    for name in sorted(images):
        c = by_image.get(name)
        x = c.x if c is not None else np.zeros(0)
        y = c.y if c is not None else np.zeros(0)
        out.append(Micrograph(name, images[name], np.asarray(x, float), np.asarray(y, float)))
    return out


def label_holdout(micrographs, fraction, seed=0):
    """Hold out a seeded random `fraction` of all labels (at least one, leaving at least one).

    -> (train, val): train = every micrograph with the remaining labels; val = the micrographs
    that had labels, with their held-out labels as targets and the others as `known`.
    """
    counts = [len(m.x) for m in micrographs]
    total = sum(counts)
    if total < 2:
        raise TopazPuError("holding out validation labels needs at least 2 labels, got %d" % total)
    n_val = int(np.clip(round(total * fraction), 1, total - 1))
    held = np.zeros(total, dtype=bool)
    held[np.random.default_rng([seed, 31]).permutation(total)[:n_val]] = True
    train, val, start = [], [], 0
    for m, c in zip(micrographs, counts):
        h = held[start:start + c]
        start += c
        train.append(Micrograph(m.name, m.image, m.x[~h], m.y[~h]))
        if c:
            val.append(Micrograph(m.name, m.image, m.x[h], m.y[h], known=np.stack([m.x[~h], m.y[~h]], axis=1)))
    return train, val


def validation_picks(model, micrographs, particle_radius, edge_margin=0):
    """Pick every micrograph as `pick` does by default (NMS at nms_radius_for(particle_radius);
    PickOptions' defaults: strided scoring averaged over 4 rotations) -> (Coordinates, orientations)."""
    from topazpu_core.picking import PickOptions, pick_images

    options = PickOptions(radius=nms_radius_for(particle_radius), edge_margin=edge_margin)
    return pick_images(model, [(m.name, m.image) for m in micrographs], options), options.orientations


def validate(model, micrographs, particle_radius, edge_margin=0, expected=None):
    """Particle-level validation: pick every micrograph, match to its targets, AP.

    expected: the expected number of particles on each micrograph (None: the targets are all
    of them). With it the result's AP, F1 and curve are the estimates from sparse labels
    (metrics.py), and "threshold_count" is the score above which all the picks number
    AUTO_PICKS_PER_PARTICLE x the expected particles (the module docstring says why the picks
    at labels trained on count). Picks matching a micrograph's `known` labels (trained on) are
    left out of the AP and F1, and so are those particles from the expected count. Without
    targets only "threshold_count" is returned.
    """
    from topazpu_core.metrics import evaluate, match_picks, threshold_for_count

    picks, orientations = validation_picks(model, micrographs, particle_radius, edge_margin)
    result = {"orientations": orientations}
    if expected is not None:
        result["threshold_count"] = threshold_for_count(picks.score, max(1.0, AUTO_PICKS_PER_PARTICLE * sum(expected)))
    groups, parts, n_known = picks.by_image(), [], 0
    for m in micrographs:
        pk = groups.get(m.name)
        if m.known is not None and len(m.known):
            n_known += len(m.known)
            if pk is not None and len(pk):
                pk = pk.subset(~match_picks(pk.xy, m.known, particle_radius, scores=pk.score))
        if pk is not None and len(pk):
            parts.append(pk)
    kept = Coordinates.concat(parts) if parts else Coordinates.empty()
    targets = Coordinates.concat([Coordinates.from_arrays(np.full(len(m.x), m.name, dtype=object), m.x, m.y)
                                  for m in micrographs])
    if not len(targets):
        return result
    n_positives = None if expected is None else max(float(len(targets)), sum(expected) - n_known)
    result.update(evaluate(kept, targets, particle_radius, images=[m.name for m in micrographs],
                           n_positives=n_positives))
    return result


def keeps_epoch(ap, n_targets, max_ap):
    """Whether a later epoch replaces the best so far: its validation AP is within the AP's
    sampling noise, sqrt(AP (1 - AP) / validation targets), of the highest AP seen.

    With a few dozen sparse validation labels that noise is several points of AP, so epochs
    that validation cannot tell apart go to the later one (trained longer, at a lower learning
    rate) rather than to a lucky early peak, and early stopping (`patience` epochs without a
    kept epoch) ends training only after a clear drop.
    """
    if n_targets <= 0 or not np.isfinite(ap):
        return False
    noise = math.sqrt(max(ap * (1 - ap), 0.0) / n_targets)
    return ap >= max_ap - noise


def thinned_curve(curve, keep_index=None, points=400):
    """At most `points` evenly spaced points of a curve dict (lists of floats), always keeping
    `keep_index` (the best-F1 point) so that a best-F1 choice on the thinned curve is the same."""
    n = len(curve["threshold"])
    keep = set(np.linspace(0, n - 1, min(points, n)).astype(int).tolist()) if n else set()
    if keep_index is not None:
        keep.add(int(keep_index))
    keep = sorted(keep)
    return {k: [float(curve[k][i]) for i in keep] for k in ("threshold", "precision", "recall")}


BUNDLED_START_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "start_model", "model.pt")
BUNDLED_START_ARCHITECTURE = ("resnet8", 32)  # the bundled model's --arch and --units


def start_model_for(value, architecture, units, pi, labelled_fraction):
    """The model whose feature layers start a training (`--start-model`), or None for a random start:
    a model file as given; 'none'; or for 'auto' the bundled model (BUNDLED_START_MODEL) while the
    labels are few (`labels_are_few`) and the network is a resnet8 with 32 units like it, else none.

    The bundled model is a resnet8 trained on every labelled micrograph of the three proteins of the
    development data (apoferritin, beta-galactosidase, ribosome; `benchmarks/build_start_model.py`).
    Measured leave-one-protein-out (`bench_quality.py --start-model lopo`: each protein's runs start
    from a model trained on the other two; sparse protocol, seeds 0-2, benchmarks/README.md): the
    held-out AP of apoferritin with 50 labels rose from 0.707 to 0.720 and with 200 from 0.746 to
    0.758, beta-galactosidase's with 50 from 0.728 to 0.746, with 200 from 0.773 to 0.790 and with
    500 from 0.813 to 0.822 (means of 3 seeds). With every
    particle labelled it did not help (apoferritin 0.798 against 0.803, seed 0): the features then
    come from the user's own particles.
    """
    if value in (None, "none"):
        return None
    if value != "auto":
        return value
    if not labels_are_few(pi, labelled_fraction) or (architecture, units) != BUNDLED_START_ARCHITECTURE:
        return None
    if not os.path.exists(BUNDLED_START_MODEL):
        raise TopazPuError("%s: the bundled starting model is missing (reinstall topazpu, or give "
                           "--start-model none)" % BUNDLED_START_MODEL)
    return BUNDLED_START_MODEL


# A starting model's features are for particles of about its training size: a particle radius
# more than this factor above or below the starting model's is warned about (`start_features`).
START_MODEL_SIZE_FACTOR = 1.5


def start_model_size_mismatch(path, start_radius, particle_radius):
    """-> (what is wrong, in words; the factor by which to multiply the downsampling to match), or
    None: when `particle_radius` (px of the training images) is more than START_MODEL_SIZE_FACTOR
    times larger or smaller than the radius the starting model at `path` was trained on
    (`start_radius`, its metadata's particle_radius), and None when either is unknown. The command
    line and the Scipion form each add their own remedy."""
    if not particle_radius or not start_radius:
        return None
    ratio = float(particle_radius) / float(start_radius)
    if 1 / START_MODEL_SIZE_FACTOR <= ratio <= START_MODEL_SIZE_FACTOR:
        return None
    return ("the starting model %s was trained on particles of radius %.3g px (%.0f px across); these are %.3g px, "
            "%.2f x as large: its features may not suit them" % (path, float(start_radius), 2 * float(start_radius),
                                                                  float(particle_radius), ratio)), ratio


def start_features(model, path, particle_radius=None):
    """Copy the feature layers of the trained model at `path` into `model` (same architecture and
    units); the head is not copied (training starts it at the prior). -> a summary of what that
    model was trained on, for the new model's metadata.

    A starting model trained on other proteins gives the features a head start that a few dozen
    labels cannot (benchmarks/bench_quality.py --start-model lopo measures it leave-one-protein-out).
    Its features were learned on particles of its own `particle_radius` in px (the bundled model:
    7.7 px on average, its particles 13-17 px across); a `particle_radius` more than
    START_MODEL_SIZE_FACTOR times larger or smaller is warned about, with the preprocessing scale
    that would match it (the start was measured only at the matching size).
    """
    from topazpu_core.checkpoint import load_model

    start, meta = load_model(path)
    if (meta.get("architecture"), int(meta.get("units", 32))) != (model.architecture, model.units):
        raise TopazPuError("%s: --start-model is a %s with %s units; this training builds a %s with %d units "
                           "(set --arch/--units to match it)" % (path, meta.get("architecture"), meta.get("units"),
                                                                 model.architecture, model.units))
    start_radius = meta.get("particle_radius")
    mismatch = start_model_size_mismatch(path, start_radius, particle_radius)
    if mismatch:
        logger.warning("%s. Preprocess at about %.2f x the current scale (topazpu preprocess -s), or give "
                       "--start-model none", *mismatch)
    model.features.load_state_dict(start.features.state_dict())
    return {"path": os.path.abspath(path), "n_train_labels": meta.get("n_train_labels"),
            "n_train_micrographs": meta.get("n_train_micrographs"),
            "epoch": meta.get("best_epoch", meta.get("epoch")), "particle_radius": start_radius}


def objective_for(method, pi, labelled_fraction):
    """The objective a run trains with: `method`, except that a GE objective becomes PN when the
    labels already cover the expected positive fraction (every expected particle is labelled, as
    when a user labels all particles on a few micrographs and gives their count as -n): no
    positive is then left among the unlabelled pixels, GE's target would be 0 or less, and
    taking the unlabelled pixels as background is what the user said."""
    if method.startswith("GE") and labelled_fraction >= pi:
        logger.warning("the labels cover %.4g of the pixels, at least the expected positive fraction pi = %.4g: "
                       "every expected particle is labelled, so %s trains as PN (unlabelled pixels taken as "
                       "background); give a larger -n if the micrographs hold particles nobody labelled",
                       labelled_fraction, pi, method)
        return "PN"
    return method


def background_radius_for(config):
    """Radius of the background ring around each label (`TrainConfig.background_ring`): the NMS
    radius that `pick` uses by default (options.nms_radius_for, 1.25 x the particle radius), or 0
    (no ring).

    The pixels there, outside the label disk, lie on the labelled particle off its centre, and no
    other particle's centre is that close (touching particles' centres are 2 r apart), so they are
    labelled background. Without it, GE leaves them among the unlabelled pixels, and with few
    labels the network scores the edge of a particle almost as high as its centre: second picks
    1-2 r from a particle made 23 % of the top picks of a 50-label apoferritin model.

    Off by default. Measured (sparse protocol, benchmarks/README.md, AP with the ring against
    without, seeds 0 / 1 / 2): apoferritin 200 labels 0.737 / 0.716 / 0.738 against 0.709 / 0.704
    / 0.724, 50 labels 0.662 / 0.663 / 0.683 against 0.643 / 0.649 / 0.671 (the gap between them
    stays); but beta-galactosidase 500 labels 0.861 / 0.779 / 0.750 against 0.864 / 0.793 /
    0.758, the ribosome 0.769 against 0.795 (recall of its labels 1.000 both) and apoferritin with
    all labels 0.773 against 0.785 (seed 0). It helps where a weak model's second picks on the
    edges of round, crowded particles are the problem, not in general."""
    return nms_radius_for(config.particle_radius) if config.background_ring else 0.0


def label_shares(config, train):
    """-> (pi, labelled fraction, background radius, background fraction) of a training on the
    micrographs `train`: the expected positive fraction of the pixels (`--pi`, or from -n), the
    fraction within a label disk, and the background ring's radius and fraction (0 without it);
    disks are clipped to the images and overlaps merged."""
    total_pixels = sum(m.image.shape[0] * m.image.shape[1] for m in train)
    background_radius = background_radius_for(config)
    counts = np.sum([label_pixel_counts(m.image.shape, m.x, m.y, config.label_radius, background_radius)
                     for m in train], axis=0)  # one micrograph at a time
    labelled_fraction, background_fraction = (float(c) / total_pixels for c in counts)
    if config.pi is not None:
        pi = float(config.pi)
        if not 0 < pi < 1:
            raise TopazPuError("--pi %g must be in (0, 1)" % pi)
    elif config.n_per_micrograph is not None:
        pi = pi_from_particles(config.n_per_micrograph, config.label_radius, total_pixels / len(train))
    else:
        raise TopazPuError("give the expected particles per micrograph (-n) or the positive fraction (--pi)")
    return pi, labelled_fraction, background_radius, background_fraction


def labels_are_few(pi, labelled_fraction):
    """True while the labels cover less than half the expected positive fraction pi: users' labels
    (a few hundred particles), not every particle of the training micrographs. The 'auto' choice of
    the tile rotation and the intensity jitter."""
    return labelled_fraction < pi / 2


def shares_for_auto(config, train):
    """(pi, labelled fraction) that the 'auto' choices read (`labels_are_few`), measured at the label
    radius given, or at LABEL_RADIUS_MOST_LABELLED while it is 'auto': whether the labels cover half
    of pi does not depend on the radius, so one pass decides the radius and the rest."""
    radius = (LABEL_RADIUS_MOST_LABELLED if config.label_radius == "auto"
              else label_radius_for(config.label_radius, None, None))
    return label_shares(dataclasses.replace(config, label_radius=radius, background_ring=False), train)[:2]


def label_radius_for(value, pi, labelled_fraction):
    """The radius in px of the label disks: a number as given, or for 'auto'
    LABEL_RADIUS_FEW_LABELS (2) while the labels cover less than half the expected positive
    fraction pi (`shares_for_auto`), else LABEL_RADIUS_MOST_LABELLED (3).

    Measured (sparse protocol, leave-one-protein-out start, 3 seeds; `benchmarks/README.md`, stop
    30), 2 against 3: apoferritin 50 labels mean AP 0.714 (0.720), 200 labels 0.760 (0.758);
    beta-galactosidase 50 labels 0.758 (0.746), 200 labels 0.794 (0.790), 500 labels 0.819 (0.822);
    50 labels within 0.05 of 200 on 5 seeds of 6 (3 of 6). With most particles labelled the
    sharper target lost AP: beta-galactosidase with every label 0.875 against 0.900 (seed 0), the
    ribosome (labels 68 % of -n) 0.775 against 0.808 (seed 0), apoferritin with every label 0.808 /
    0.755 against 0.803 / 0.764 (seeds 0 / 1); so 'auto' keeps 3 there."""
    if value == "auto":
        return float(LABEL_RADIUS_FEW_LABELS if labels_are_few(pi, labelled_fraction) else LABEL_RADIUS_MOST_LABELLED)
    try:
        radius = float(value)
    except (TypeError, ValueError):
        radius = float("nan")
    if not radius >= 0:
        raise TopazPuError("label radius %r: a number of px (>= 0), or 'auto'" % (value,))
    return radius


def tile_rotation_for(value, pi, labelled_fraction):
    """How the training tiles turn (`TileSampler`, any_angle): 'any' (a random angle) or '90'
    (multiples of 90 degrees only; both maybe mirrored) as given, or for 'auto' 'any'
    while the labels cover less than half the expected positive fraction pi, as users label (a
    few hundred particles), else '90'.

    Measured (sparse protocol, `benchmarks/README.md`): with 50-500 labels (1-14 % of the expected
    particles) any angle raised the held-out AP on apoferritin with 50 labels from 0.654 to 0.713
    and with 200 from 0.712 to 0.747 (3 seeds), beta-galactosidase with 50 labels by 0.012 and with
    500 by 0.002 / 0.008 (seeds 0 / 1). With every particle of the training micrographs labelled
    (apoferritin, 88 % of the expected particles) it lowered it, 0.753 against 0.785 (seed 0), as
    in the demo (all labels of 3 micrographs, 0.703 against 0.711), because linearly interpolated
    tiles were smoother than the micrographs. Turned by a cubic spline
    (sampling.ROTATION_SPLINE_ORDER) it is level there: apoferritin with all labels 0.776 against
    0.772 (3 seeds), beta-galactosidase 0.890 / 0.861 against 0.895 / 0.865; the ribosome (68 %)
    0.805 against 0.795 (seed 0). Level is no gain for more training time (0.113 against 0.082 s
    per update in bfloat16), so 'auto' keeps 90 degrees for mostly labelled sets."""
    if value not in TILE_ROTATIONS:
        raise TopazPuError("tile rotation %r: one of %s" % (value, ", ".join(TILE_ROTATIONS)))
    if value == "auto":
        return "any" if labels_are_few(pi, labelled_fraction) else "90"
    return value


def epochs_for(value, pi, labelled_fraction):
    """Epochs of a training in all: a number as given, or for 'auto' EPOCHS_FEW_LABELS while the
    labels cover less than half the expected positive fraction pi (as users label: a few hundred
    particles), else EPOCHS_MOST_LABELLED.

    Measured (sparse protocol, `benchmarks/README.md`; bfloat16): with every particle of the
    training micrographs labelled 30 epochs instead of 20 raised apoferritin from 0.785 / 0.747 /
    0.784 to 0.803 / 0.764 / 0.818 (seeds 0 / 1 / 2), beta-galactosidase from 0.895 / 0.865 /
    0.846 to 0.900 / 0.866 / 0.853 and the ribosome (labels 68 % of -n) from 0.795 to 0.808. With
    few labels they were level or a little higher (apoferritin 200 labels 0.739 against 0.735,
    beta-galactosidase 500 labels 0.872 against 0.865; seed 0), not worth half as much training
    time again, hence 'auto'."""
    if value == "auto":
        return EPOCHS_FEW_LABELS if labels_are_few(pi, labelled_fraction) else EPOCHS_MOST_LABELLED
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TopazPuError("epochs %r: a whole number of at least 1, or 'auto'" % (value,))
    return value


def cpu_computes_bfloat16():
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), where PyTorch's bfloat16
    convolutions run at about twice the speed of float32; elsewhere they are emulated, and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a PyTorch without these probes
        return False


def precision_for(value, device):
    """The arithmetic of the feature layers in training: 'float32' or 'bfloat16' as given, or for
    'auto' 'bfloat16' on a CPU with bfloat16 instructions (`cpu_computes_bfloat16`), else 'float32'.

    With 'bfloat16' the feature layers run under `torch.autocast` (convolutions in bfloat16); the
    weights, the optimiser, batch normalisation, the output layer and the loss stay float32, and
    picking always computes in float32.

    Measured (sparse protocol, seed 0 unless given, float32 in brackets; `benchmarks/README.md`),
    the same tiles: apoferritin all labels 0.785 (0.785), 50 labels 0.686 (0.688), the ribosome
    0.795 (0.795), beta-galactosidase 500 labels 0.865 (0.865); against float32 runs of the
    previous tile sampler (other random draws): apoferritin 50 labels seeds 1 / 2 0.708 / 0.727
    (0.711 / 0.726), 200 labels 0.735 (0.739), beta-galactosidase 500 labels seed 1 0.806 (0.801).
    One update of resnet8 on 8 tiles of 167 px: 79 against 130 ms on 2 cores with AVX512-BF16."""
    if value not in PRECISIONS:
        raise TopazPuError("precision %r: one of %s" % (value, ", ".join(PRECISIONS)))
    if value == "auto":
        return "bfloat16" if torch.device(device).type == "cpu" and cpu_computes_bfloat16() else "float32"
    return value


INTENSITY_JITTER = 0.2  # 'auto' jitter while the labels cover less than half the expected particles


def intensity_jitter_for(value, pi, labelled_fraction):
    """The training tiles' intensity jitter a (`TileSampler`): a number as given, or for 'auto'
    INTENSITY_JITTER while the labels cover less than half the expected positive fraction pi (as
    users label: a few hundred particles), else 0.

    Measured (sparse protocol, `benchmarks/README.md`): with 50-500 labels (1-14 % of the expected
    particles) a = 0.2 raised the held-out AP by 0.024 on apoferritin with 50 labels (3 seeds),
    0.015 on beta-galactosidase with 50 and 0.011 with 500, and left apoferritin with 200 where it
    was. With most particles labelled and a GE objective it slowed training down: apoferritin with
    all labels (88 % of the expected particles) 0.712 against 0.785, the ribosome (68 %) 0.756
    against 0.795."""
    if value == "auto":
        return INTENSITY_JITTER if labels_are_few(pi, labelled_fraction) else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TopazPuError("intensity jitter %r: a number in [0, 1), or 'auto'" % (value,)) from None


class Trainer:
    """Holds the model, optimiser and data for one training run."""

    def __init__(self, config: TrainConfig, train: List[Micrograph], val: List[Micrograph], device=None):
        if config.method not in OBJECTIVES:
            raise TopazPuError("unknown --objective %r (choose from %s)" % (config.method, ", ".join(OBJECTIVES)))
        n_labels = sum(len(m.x) for m in train)
        if n_labels == 0:
            raise TopazPuError("no labelled particle on any training micrograph")
        self.label_radius_asked = config.label_radius  # fit resolves 'auto' before, for both rounds
        shares = shares_for_auto(config, train) if config.label_radius == "auto" else (None, None)
        config = dataclasses.replace(config, label_radius=label_radius_for(config.label_radius, *shares))
        self.config, self.train, self.val = config, train, val
        torch.manual_seed(config.seed)
        self.model = Classifier(config.architecture, units=config.units)
        rf = self.model.receptive_field
        if config.label_radius * 2 + 1 > rf:
            raise TopazPuError("label radius %g px is larger than the receptive field of %s (%d px)"
                               % (config.label_radius, config.architecture, rf))
        if config.label_radius < self.model.stride / 2:
            logger.warning("label radius %g px < stride %d / 2: a labelled particle marks a point of the network's "
                           "output grid in only %.0f %% of the training tiles; use --label-radius %g or more",
                           config.label_radius, self.model.stride,
                           100 * disk_pixels(config.label_radius) / self.model.stride ** 2, self.model.stride / 2)
        self.ae_weight = autoencoder_weight(config.autoencoder, n_labels)
        self.decoder = Decoder(self.model.features.out_channels, self.model.stride) if self.ae_weight > 0 else None
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.precision = precision_for(config.precision, self.device)
        if self.precision == "bfloat16" and self.device.type == "cpu" and not cpu_computes_bfloat16():
            logger.warning("--precision bfloat16 on a CPU without bfloat16 instructions: emulated, slower than "
                           "float32")
        logger.info("feature layers computed in %s in training (%s)", self.precision, config.precision)
        self.model.to(self.device)
        if self.decoder is not None:
            self.decoder.to(self.device)
        params = list(self.model.parameters()) + (list(self.decoder.parameters()) if self.decoder else [])
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate)

        total_pixels = sum(m.image.shape[0] * m.image.shape[1] for m in train)
        pi, labelled_fraction, self.background_radius, self.background_fraction = label_shares(config, train)
        self.pi, self.labelled_fraction = pi, labelled_fraction
        self.objective = objective_for(config.method, pi, labelled_fraction)
        self.pi_u = (unlabelled_positive_fraction(pi, labelled_fraction, self.background_fraction)
                     if self.objective.startswith("GE") else None)
        self.n_labels = n_labels
        logger.info("pi = %.5f (%s), labelled fraction = %.5f (%d labels, %d px each), GE target among unlabelled = %s, "
                    "expected particles per micrograph = %.1f", pi, "given" if config.pi else "from -n",
                    labelled_fraction, n_labels, disk_pixels(config.label_radius),
                    "%.5f" % self.pi_u if self.pi_u is not None else "n/a",
                    pi * total_pixels / len(train) / disk_pixels(config.label_radius))
        start = start_model_for(config.start_model, config.architecture, config.units, pi, labelled_fraction)
        self.start_model = start_features(self.model, start, config.particle_radius) if start else None
        logger.info("feature layers start from %s (--start-model %s)", start or "random weights", config.start_model)
        self.intensity_jitter = intensity_jitter_for(config.intensity_jitter, pi, labelled_fraction)
        self.tile_rotation = tile_rotation_for(config.tile_rotation, pi, labelled_fraction)
        logger.info("training tiles: turned by %s (%s); intensity jitter %g (%s); background ring %s",
                    "any angle" if self.tile_rotation == "any" else "multiples of 90 degrees", config.tile_rotation,
                    self.intensity_jitter, config.intensity_jitter,
                    "out to %g px around each label (%.5f of the pixels)"
                    % (self.background_radius, self.background_fraction) if self.background_radius else "off")
        tile = config.tile_size or rf + 24 * self.model.stride
        centres = [np.stack([m.x, m.y], axis=1) for m in train]
        self.sampler = TileSampler([m.image for m in train], config.label_radius, centres, tile,
                                   (self.model.stride, (rf - 1) // 2), intensity_jitter=self.intensity_jitter,
                                   background_radius=self.background_radius,
                                   any_angle=self.tile_rotation == "any")
        self._start_at_prior()
        self.history = []
        self.start_epoch = 0
        self.best = {"epoch": -1, "val_ap": -1.0, "max_val_ap": -1.0}
        self.validation = "none"
        self.notes = {}  # more metadata of every epoch (fit_round's notes)
        self.stopped_early = False

    def expected_counts(self, micrographs):
        """Expected particles on each micrograph (`expected_counts` at this training's pi)."""
        return expected_counts(self.pi, self.config.label_radius, micrographs)

    @torch.no_grad()
    def _start_at_prior(self):
        """Zero head, bias logit(pi): every logit starts at the prior, so the GE terms start at their minimum.

        With the random head of PyTorch's default initialisation, the spread of the initial logits
        makes the mean sigmoid overshoot pi and the GE term's first large gradients set some seeds
        back for many epochs. Measured on apoferritin (split 1, 200 labels, 20 x 100 updates, seeds
        0/1/2): random head 0.666/0.656/0.576 validation AP (best epochs 14-19); random head with
        its bias fitted so that a batch's mean p is exactly the prior 0.667/0.662/0.679 (best
        epochs 16-18); zero head 0.685/0.681/0.674 (best epochs 5-10, so early stopping ends
        training in about half the time). The zero head learns more slowly in the first hundred
        updates (the features get no gradient until the head has grown), which only matters for
        toy runs.
        """
        self.model.head.weight.zero_()
        self.model.head.bias.fill_(math.log(self.pi / (1 - self.pi)))

    def step(self, rng):
        c = self.config
        xs, ys = self.sampler.sample(c.tiles_per_batch, rng)
        x = torch.from_numpy(xs)[:, None].to(self.device)
        y = torch.from_numpy(ys).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            feats = self.model.features(x)
        feats = feats.float()
        logits = self.model.head(feats)[:, 0]
        pos = logits[y == POSITIVE]
        unl = logits.reshape(-1) if self.objective == "NNPU" else logits[y == UNLABELLED]
        loss, stats = pu_objective(self.objective, pos, unl, self.pi, self.pi_u, slack=c.slack,
                                   nnpu_beta=c.nnpu_beta, nnpu_gamma=c.nnpu_gamma)
        if self.background_radius:
            background = background_loss(logits[y == BACKGROUND])
            loss = loss + background
            stats["background"] = background.item()
        if self.decoder is not None:
            recon = self.decoder(feats)
            o = (self.model.receptive_field - 1) // 2 - self.model.stride // 2 + 1
            n = recon.shape[-1]
            ae = autoencoder_loss(x[:, 0, o:o + n, o:o + n], recon)
            loss = loss + self.ae_weight * ae
            stats["autoencoder"] = ae.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return stats

    def state(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "decoder": self.decoder.state_dict() if self.decoder else {},
                "history": [{k: float(v) for k, v in row.items()} for row in self.history],
                "best_epoch": self.best["epoch"], "best_val_ap": self.best["val_ap"],
                "max_val_ap": self.best["max_val_ap"]}

    def restore(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.decoder is not None and state["decoder"]:
            self.decoder.load_state_dict(state["decoder"])
        self.history = [dict(row) for row in state["history"]]
        self.best = {"epoch": int(state["best_epoch"]), "val_ap": float(state["best_val_ap"]),
                     "max_val_ap": float(state.get("max_val_ap", state["best_val_ap"]))}
        self.start_epoch = int(state["epoch"]) + 1


def fit(config: TrainConfig, train: List[Micrograph], val: List[Micrograph], model_path, resume=False,
        progress=True, device=None, validation=None):
    """Train and write the model to `model_path` -> its metadata dict.

    Without pseudo-labels this is one training (`fit_round`) of `config.epochs` (`epochs_for`;
    'auto' is resolved here, and the value asked for is recorded as `epochs_asked`; so is the label
    radius, `label_radius_for`, from the labels given, for both rounds of self-training). With
    `config.pseudo_labels` = f > 0 (self-training), a first model is trained on the labels and
    written to MODEL.round1.pt; its best picks on each training micrograph, f x (expected
    particles - labels there) of them away from the labels (`pseudo_labels`), are added to the
    labels, and the model of `model_path` is trained from the start on both. Assumed: the first
    model's highest-scoring picks are mostly particles (f < 1 keeps the surest of them). The two
    rounds share the epochs: `config.epochs` // 2 in the first, the rest in the second. `resume`
    skips a first round whose model is written.
    """
    share = float(config.pseudo_labels or 0.0)
    if not 0 <= share < 1:
        raise TopazPuError("--pseudo-labels %g: a share in (0, 1), or 0 for one round" % share)
    asked = {"epochs_asked": config.epochs, "label_radius_asked": config.label_radius}
    auto = "auto" in (config.epochs, config.label_radius)
    pi, labelled_fraction = shares_for_auto(config, train) if auto else (None, None)
    config = dataclasses.replace(config, label_radius=label_radius_for(config.label_radius, pi, labelled_fraction),
                                 epochs=epochs_for(config.epochs, pi, labelled_fraction))  # for both rounds
    if not share or config.epochs < 2:
        return fit_round(config, train, val, model_path, resume=resume, progress=progress, device=device,
                         validation=validation, notes=dict(asked, pseudo_label_share=0.0))
    from topazpu_core.checkpoint import load_model

    first_path = os.path.splitext(model_path)[0] + ".round1.pt"
    if not (resume and os.path.exists(first_path)):
        logger.info("self-training, round 1 of 2: the labels alone -> %s", first_path)
        fit_round(dataclasses.replace(config, pseudo_labels=0.0, epochs=config.epochs // 2), train, val, first_path,
                  resume=resume, progress=progress, device=device, validation=validation,
                  notes=dict(asked, pseudo_label_share=0.0))
    first, first_meta = load_model(first_path, device=device)
    expected = expected_counts(first_meta["pi"], config.label_radius, train)
    extra = pseudo_labels(first, train, expected, share, config.particle_radius, edge_margin_of(config))
    n_extra = sum(len(e) for e in extra)
    logger.info("self-training, round 2 of 2: %d labels + %d pseudo-labels (the first model's best picks, %g of "
                "the expected particles not labelled)", sum(len(m.x) for m in train), n_extra, share)
    merged = [Micrograph(m.name, m.image, np.concatenate([m.x, e[:, 0]]), np.concatenate([m.y, e[:, 1]]))
              for m, e in zip(train, extra)]
    notes = {**asked, "pseudo_label_share": share, "n_pseudo_labels": n_extra,
             "first_round_model": os.path.basename(first_path), "first_round_threshold": first_meta.get("threshold")}
    return fit_round(dataclasses.replace(config, epochs=config.epochs - config.epochs // 2), merged, val, model_path,
                     resume=resume, progress=progress, device=device, validation=validation, notes=notes)


def pseudo_labels(model, micrographs, expected, fraction, particle_radius, edge_margin=0):
    """The model's highest-scoring picks on each micrograph farther than `particle_radius` from
    every label: round(fraction x (expected - labels)) of them -> list of (k, 2) arrays of x, y
    (one per micrograph)."""
    picks, _ = validation_picks(model, micrographs, particle_radius, edge_margin)
    groups, out = picks.by_image(), []
    for m, n in zip(micrographs, expected):
        pk = groups.get(m.name)
        k = int(round(fraction * max(0.0, n - len(m.x))))
        if pk is None or not len(pk) or k == 0:
            out.append(np.zeros((0, 2)))
            continue
        if len(m.x):  # none within the particle radius of a label
            nearest, _ = cKDTree(np.stack([m.x, m.y], axis=1)).query(np.asarray(pk.xy, dtype=float))
            pk = pk.subset(nearest > particle_radius)
        top = np.argsort(-pk.score, kind="stable")[:k]
        out.append(np.asarray(pk.xy, dtype=float)[top].reshape(-1, 2))
    return out


def fit_round(config: TrainConfig, train: List[Micrograph], val: List[Micrograph], model_path, resume=False,
              progress=True, device=None, validation=None, notes=None):
    """One training: train, validate each epoch, checkpoint; write the kept model to `model_path`.
    -> metadata dict.

    validation: how `val` was made, recorded in the metadata (e.g. "held-out labels 0.2").
    notes: more metadata of every epoch (the pseudo-labels of self-training).
    """
    if config.threads:
        torch.set_num_threads(int(config.threads))
    trainer = Trainer(config, train, val, device=device)
    trainer.validation = validation or ("given" if val else "none")
    trainer.notes = dict(notes or {})
    if resume:
        last = latest_checkpoint(model_path)
        if last:
            trainer.restore(load_checkpoint(last, map_location=trainer.device))
            logger.info("resuming after epoch %d from %s", trainer.start_epoch - 1, last)
        else:
            logger.info("--resume: no checkpoint beside %s, starting fresh", model_path)
    n_val_targets = sum(len(m.x) for m in val)
    for epoch in range(trainer.start_epoch, config.epochs):
        if (config.patience is not None and trainer.best["epoch"] >= 0
                and epoch - trainer.best["epoch"] > config.patience):
            logger.info("early stop: no validation improvement for %d epochs", config.patience)
            trainer.stopped_early = True
            break
        rng = np.random.default_rng([config.seed, epoch])
        trainer.model.train()
        if trainer.decoder is not None:
            trainer.decoder.train()
        t0 = time.time()
        sums = {}
        # In a log, the epoch's own line below replaces the bar (no line per step).
        bar = progress_bar(range(config.epoch_size), desc="epoch %d/%d" % (epoch + 1, config.epochs), unit="step",
                           enabled=progress, leave=False, final_line=False)
        total = config.epochs * config.epoch_size
        for i in bar:
            lr = learning_rate_at(epoch * config.epoch_size + i, total, config.learning_rate)
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            stats = trainer.step(rng)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss="%.4f" % stats["loss"])
        row = {"epoch": epoch + 1, "seconds": time.time() - t0}
        row.update({k: v / config.epoch_size for k, v in sums.items()})
        trainer.model.eval()
        result = None
        if val and n_val_targets:
            result = validate(trainer.model, val, config.particle_radius, edge_margin_of(config),
                              expected=trainer.expected_counts(val))
            row.update(val_ap=result["ap"], val_best_f1=result["best_f1"], val_threshold=result["threshold_count"])
        meta = model_metadata(trainer, epoch, result)
        if result is None or keeps_epoch(result["ap"], result["n_targets"], trainer.best["max_val_ap"]):
            ap = result["ap"] if result else float("nan")
            trainer.best = {"epoch": epoch, "val_ap": ap, "max_val_ap": max(ap, trainer.best["max_val_ap"])}
        trainer.history.append(row)
        logger.info("epoch %d: loss %.4f%s (%.0f s)", epoch + 1, row["loss"],
                    ", validation AP %.3f, F1 %.3f (%s)" % (row["val_ap"], row["val_best_f1"], meta["val_estimate"])
                    if "val_ap" in row else "", row["seconds"])
        save_checkpoint(model_path, epoch, trainer.state(), meta)
        write_history(model_path, trainer.history)
    return finish(trainer, model_path)


def model_metadata(trainer, epoch, result):
    """Metadata of the model after `epoch` (0-based) with its validation `result` (or None):
    what pick/extract need (architecture, radii, scale, threshold) and how it was validated."""
    config = trainer.config
    meta = dataclasses.asdict(config)
    meta.update(edge_margin=edge_margin_of(config), nms_radius=nms_radius_for(config.particle_radius),
                architecture=config.architecture,
                receptive_field=trainer.model.receptive_field, stride=trainer.model.stride, pi=trainer.pi,
                objective_trained=trainer.objective, pi_unlabelled=trainer.pi_u,
                intensity_jitter_applied=trainer.intensity_jitter, tile_rotation_applied=trainer.tile_rotation,
                precision_applied=trainer.precision,
                background_radius=trainer.background_radius,
                background_fraction=trainer.background_fraction,
                labelled_fraction=trainer.labelled_fraction,
                autoencoder_weight=trainer.ae_weight, start_model=trainer.start_model,
                start_model_asked=config.start_model, label_radius_asked=trainer.label_radius_asked,
                n_train_micrographs=len(trainer.train),
                n_train_labels=trainer.n_labels, n_val_micrographs=len(trainer.val), validation=trainer.validation,
                epoch=epoch + 1, torch_version=torch.__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    meta.update(trainer.notes)
    if result is None:
        meta.update(val_ap=None, val_best_f1=None, val_estimate=None, threshold=None,
                    threshold_rule="none yet: no validation (the final model's threshold comes from its "
                                   "training micrographs)")
        return meta
    from topazpu_core.metrics import best_f1_index

    curve = result["curve"]
    best = best_f1_index(curve["threshold"], curve["precision"], curve["recall"])
    sparse = result["n_positives"] > result["n_targets"]
    meta.update(val_ap=result["ap"], val_best_f1=result["best_f1"], val_threshold_at_best_f1=result["threshold_at_best_f1"],
                val_n_targets=result["n_targets"], val_n_positives=result["n_positives"],
                val_estimate=("estimated from %d labels of ~%.0f particles (labels assumed a random sample, -n "
                              "assumed right)" % (result["n_targets"], result["n_positives"])) if sparse
                else "exact (%d targets)" % result["n_targets"],
                val_orientations=result["orientations"], threshold=result["threshold_count"],
                threshold_rule="picks %.1f x the expected %.1f particles per micrograph on the %d validation "
                               "micrographs (every pick counted)"
                               % (AUTO_PICKS_PER_PARTICLE,
                                  sum(trainer.expected_counts(trainer.val)) / max(1, len(trainer.val)),
                                  len(trainer.val)),
                val_curve=thinned_curve(curve, best))
    return meta


def averaged_weights(model_path, first, last):
    """Mean of the model weights of epoch checkpoints `first`..`last` (0-based, inclusive): float
    tensors averaged (batch-norm statistics included), counters taken from the last epoch."""
    states = [load_checkpoint(checkpoint_path(model_path, e))["model"]
              for e in range(first, last + 1)]
    return {k: (sum(s[k] for s in states) / len(states)) if v.is_floating_point() else v
            for k, v in states[-1].items()}


def kept_weights(meta):
    """What the final model's weights are, in words: the averaged epochs (or the only one)."""
    if meta.get("averaged_epochs"):
        return "mean weights of epochs %d-%d" % tuple(meta["averaged_epochs"])
    return "weights of epoch %d" % meta["epoch"]


# The final model averages the epochs from the one after which each label has been the centre of
# this many training tiles (on average), and at least the second half of them (`averaging_start`).
AVERAGE_AFTER_TILES_PER_LABEL = 8


def averaging_start(epochs, n_labels, config):
    """First epoch (0-based) of the final model's mean weights: the epoch by which each label has
    been the centre of AVERAGE_AFTER_TILES_PER_LABEL training tiles on average (the sampler
    centres `sampling.label_centred_tiles` of each batch on a label), and at the latest the
    middle of training.

    With few labels the network has learned them within the first epochs and then memorises
    them, so that an average over more epochs generalises better; with many, the early epochs
    are still learning. Measured (benchmarks/epoch_ap.py --windows, the true AP of the mean
    weights of epochs k-20; benchmarks/README.md): apoferritin 50 labels best from epoch 1-3,
    200 labels from 3-5, all 1,292 labels from 13-15; beta-galactosidase 50 labels flat, 200
    from 5, 500 from 11-15. With the default 100 updates of 8 tiles per epoch this averages
    epochs 2-20 at 50 labels, 5-20 at 200 and 11-20 from 500 labels on. The exception: the
    ribosome's 252 (incomplete) labels, whose AP against them is highest from epoch 14 (0.009
    lower at 6-20 than at 11-20) at the same best F1."""
    per_epoch = config.epoch_size * label_centred_tiles(config.tiles_per_batch)
    return min(epochs // 2, int(AVERAGE_AFTER_TILES_PER_LABEL * n_labels // max(1, per_epoch)))


def finish(trainer, model_path):
    """Write the final model: the mean of the weights of the epochs trained from `averaging_start`
    on (`averaged_weights`; one epoch: its own weights), validated like an epoch when there is
    validation, else given the threshold of its training micrographs; or, when `patience`
    stopped training early, the best epoch's checkpoint (the user asked validation to choose).
    With sparse labels the picks change from epoch to epoch by a few points of AP at the end of
    training, and the mean of those epochs scores about 0.01 AP above the last one (apoferritin,
    50 and 200 labels); on fully labelled validation micrographs it scores 0.006 above the best
    epoch chosen on them (benchmarks/README.md)."""
    config = trainer.config
    epochs = len(trainer.history)
    averaged, meta = None, None
    if trainer.stopped_early:  # the best epoch's checkpoint: its weights, validated when it was trained
        best, meta = load_model(checkpoint_path(model_path, trainer.best["epoch"]))
        trainer.model.load_state_dict(best.state_dict())
    elif epochs >= 2:
        averaged = (averaging_start(epochs, trainer.n_labels, config), epochs - 1)
        trainer.model.load_state_dict(averaged_weights(model_path, *averaged))
    trainer.model.eval()
    if meta is None:  # validated like an epoch (no result without validation)
        result = None
        if trainer.val and sum(len(m.x) for m in trainer.val):
            result = validate(trainer.model, trainer.val, config.particle_radius, edge_margin_of(config),
                              expected=trainer.expected_counts(trainer.val))
        meta = model_metadata(trainer, max(epochs, 1) - 1, result)
    meta = dict(meta, epochs_trained=epochs, best_epoch=trainer.best["epoch"] + 1,
                averaged_epochs=[averaged[0] + 1, averaged[1] + 1] if averaged else None)
    if meta["threshold"] is None:  # none from validation: count every pick on the training micrographs
        expected = trainer.expected_counts(trainer.train)
        unlabelled = [Micrograph(m.name, m.image, np.zeros(0), np.zeros(0)) for m in trainer.train]
        result = validate(trainer.model, unlabelled, config.particle_radius, edge_margin_of(config), expected=expected)
        meta.update(threshold=result["threshold_count"],
                    threshold_rule="picks %.1f x the expected %.1f particles per micrograph on the %d training "
                                   "micrographs (no validation; every pick counted)"
                                   % (AUTO_PICKS_PER_PARTICLE, sum(expected) / len(trainer.train), len(trainer.train)))
    save_model(model_path, trainer.model, meta)
    logger.info("wrote %s (%s, validation AP %s, threshold %.2f: %s)", model_path, kept_weights(meta),
                "%.3f" % meta["val_ap"] if meta["val_ap"] is not None else "n/a", meta["threshold"],
                meta["threshold_rule"])
    return meta


def write_history(model_path, history):
    stem = os.path.splitext(model_path)[0]
    keys = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_write(stem + ".training.tsv") as f:
        f.write("\t".join(keys) + "\n")
        for row in history:
            f.write("\t".join("%.6g" % row[k] if k in row else "" for k in keys) + "\n")
    try:
        from topazpu_core.plots import plot_training_curve
        plot_training_curve(history, stem + ".training.png")
    except ImportError:
        pass


def load_micrographs(image_spec, targets_path):
    """Read preprocessed images and their labelled centres -> (list of Micrograph, preprocess info).

    image_spec: a directory, a list file or paths (images.list_images). A `preprocess.json` in
    the images' folder (written by `topazpu preprocess`) supplies the scale and normalisation.
    float32 MRC images are memory-mapped (images.open_image_lazy), not read into memory.
    """
    from topazpu_core.coordinates import drop_outside, match_image_names, read_coordinates
    from topazpu_core.images import image_name, list_images, open_image_lazy
    from topazpu_core.preprocessing import read_preprocess_record

    paths = list_images(image_spec)
    if not paths:
        raise TopazPuError("%s: no micrographs found" % (image_spec,))
    images = {}
    for p in paths:
        images[image_name(p)] = open_image_lazy(p)
    coords = read_coordinates(targets_path)
    coords = match_image_names(coords, list(images), targets_path)
    coords = drop_outside(coords, {n: im.shape for n, im in images.items()}, targets_path)
    info = {}
    folder = os.path.dirname(os.path.abspath(paths[0]))
    pre = read_preprocess_record(folder)
    if pre is not None:
        info = {"scale": float(pre.get("scale", 1.0)), "normalization": pre.get("method", "gmm")}
    return micrographs_from(images, coords, targets_path), info
