"""Train a PU particle classifier on preprocessed micrographs and a few hundred labelled particles.

Images are the output of `topazpu preprocess` and coordinates are in their frame. With
--pseudo-labels 0.8 training runs in two rounds of half the --epochs each (self-training): a
first model trains on the labels (MODEL.round1.pt); its best picks on each training micrograph,
0.8 x the expected particles not labelled, join the labels, and MODEL.pt trains from the start
on both (3 seeds, same training time: apoferritin 50 labels AP 0.667 against 0.630 in one
round; beta-galactosidase 50 labels 0.731 against 0.774 (seed 0), both before --intensity-jitter:
off by default). In each round every label trains, on tiles turned, mirrored and, while the
labels cover less than half the expected particles, turned by any angle, not only by multiples
of 90 degrees (--tile-rotation), and jittered in contrast and brightness (--intensity-jitter);
the model is the mean of the weights of the later epochs (from the epoch by which each label
has been the centre of 8 training tiles, at the latest the middle:
epochs 2-20 with 50 labels, 5-20 with 200, 11-20 with 500, 16-30 with every particle labelled,
where --epochs auto trains 30 epochs, not 20; `averaged_epochs` in MODEL.json):
with a few hundred sparse labels, held-out labels estimate the AP too noisily to choose an epoch (+-0.07 with 40
of them) and cost the training those labels (apoferritin, 200 labels, one round: AP 0.686 with
every label, 0.635 with 20 % held out and the best epoch; benchmarks/README.md).
Validation, when asked for: --test-images/--test-targets, or -k/--fold, or a random
--val-fraction of the labelled micrographs, or a random --val-labels fraction of the LABELS
(their micrographs stay in training with the other labels). Validation labels may be as sparse
as the training ones: assuming they are a random sample of the particles and -n is right, the
validation AP is an estimate of the AP on fully labelled micrographs. After each epoch the
model picks the validation micrographs (the training curve, and `best_epoch` in MODEL.json);
the model written to -o MODEL.pt (plus MODEL.json, MODEL.training.tsv/.png) is the mean of the
weights of those epochs all the same, validated for its AP estimate and
threshold: on fully labelled validation micrographs it scored 0.006 AP above the best epoch
chosen on them (apoferritin and beta-galactosidase, 2 seeds each, benchmarks/epoch_choice.py).
MODEL.checkpoints/epochNNN.pt (NNN from 000 = epoch 1; MODEL.round1.checkpoints/ for the first round) resume training and are
models too: `pick`/`extract --model MODEL.checkpoints/epoch004.pt` use that epoch. The model's
threshold ('auto' in pick/extract) is the score above which it picks 1.1 x -n particles per
micrograph on the validation micrographs (the training ones without validation), every pick
counted (those at the labels given too).

example:
  topazpu preprocess -s 4 -o pre/ raw/*.mrc
  topazpu train --train-images pre/ --train-targets picks.txt -n 150 --particle-radius 8 -o model.pt
"""
import logging
import sys

from topazpu_core.errors import TopazPuError
from topazpu_core.options import (ARCHITECTURES, EPOCHS_FEW_LABELS, EPOCHS_MOST_LABELLED, LABEL_RADIUS_FEW_LABELS,
                                  LABEL_RADIUS_MOST_LABELLED, NMS_RADIUS_FACTOR, OBJECTIVES, PRECISIONS,
                                  TILE_ROTATIONS)

logger = logging.getLogger(__name__)


def add_args(p):
    g = p.add_argument_group("data")
    g.add_argument("--train-images", required=True, help="preprocessed micrographs: a directory, a list file or a glob")
    g.add_argument("--train-targets", required=True, help="labelled particle centres (any `topazpu convert` format)")
    g.add_argument("--test-images", help="validation micrographs (default: split the training micrographs)")
    g.add_argument("--test-targets", help="validation particle centres (all particles of those micrographs)")
    g.add_argument("-k", "--k-fold", type=int, default=0, help="k-fold split of labelled micrographs (default: off)")
    g.add_argument("--fold", type=int, default=0, help="fold used for validation with -k (default: 0)")
    g.add_argument("--val-fraction", type=float, default=0,
                   help="fraction of labelled micrographs held out for validation when no test set or -k is given "
                        "(default: 0)")
    g.add_argument("--val-labels", type=float, default=0,
                   help="fraction of the labels held out for validation when no test set, -k or --val-fraction "
                        "is given; their micrographs stay in training (default: 0 = every label trains, no "
                        "validation, the model is the mean weights of the later epochs)")
    g = p.add_argument_group("labels and prior")
    g.add_argument("-n", "--num-particles", type=float, help="expected particles per micrograph (sets pi)")
    g.add_argument("--pi", type=float, help="positive fraction of pixels (instead of -n)")
    g.add_argument("--label-radius", default="auto", metavar="R",
                   help="radius of the labelled disk around each centre, px of the training images (not the "
                        "particle radius); 'auto' = %g while the labels cover less than half the expected "
                        "particles (-n), else %g: with 50-200 labels 2 raised the beta-galactosidase AP by "
                        "0.004-0.012 and brought 50 labels within 0.05 of 200 on 5 seeds of 6; with every "
                        "particle labelled it lowered it (default: auto)" % (LABEL_RADIUS_FEW_LABELS,
                                                                            LABEL_RADIUS_MOST_LABELLED))
    g.add_argument("--particle-radius", type=float, required=True,
                   help="particle radius in px of the training images: validation matches picks within it, "
                        "and picks are at least %g x it apart (NMS; the model's default for pick)"
                        % NMS_RADIUS_FACTOR)
    g.add_argument("--background-ring", action="store_true",
                   help="label the ring around each labelled centre, out to the NMS radius (%g x "
                        "--particle-radius) and outside its label disk, as background: those pixels lie on the "
                        "labelled particle off its centre, and no other particle's centre is that close. It "
                        "raised apoferritin's AP by 0.01-0.03 (50 and 200 labels, 3 seeds), whose weak models "
                        "pick the edges of particles, and lowered beta-galactosidase's by 0.003-0.014 (500 "
                        "labels) and the ribosome's (default: off)" % NMS_RADIUS_FACTOR)
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=OBJECTIVES, default="GE-binomial", help="PU objective (default: GE-binomial)")
    g.add_argument("--slack", type=float, help="GE weight lambda (default: 10 for GE-KL, 1 for GE-binomial)")
    g.add_argument("--nnpu-beta", type=float, default=0.0, help="NNPU beta (default: 0)")
    g.add_argument("--nnpu-gamma", type=float, default=1.0, help="NNPU gamma (default: 1)")
    g.add_argument("--autoencoder", default="0",
                   help="autoencoder weight gamma, or 'auto' = 10/N for N <= 250 labels (default: 0)")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--arch", default="resnet8", choices=ARCHITECTURES,
                   help="architecture (default: resnet8, receptive field 71 px)")
    g.add_argument("--units", type=int, default=32, help="width of the first layer (default: 32)")
    g.add_argument("--start-model", default="auto", metavar="MODEL.pt|auto|none",
                   help="start the feature layers from this trained model (same --arch and --units), the output "
                        "layer from the prior; 'none' = random weights; 'auto' = the bundled model (a resnet8 "
                        "trained on apoferritin, beta-galactosidase and ribosome micrographs) while the labels cover "
                        "less than half the expected particles and --arch/--units are resnet8/32, else random: "
                        "measured on each protein from a model of the other two, it raised the mean AP with 50 "
                        "labels by 0.013 (apoferritin) and 0.018 (beta-galactosidase) (default: auto)")
    g.add_argument("--pseudo-labels", type=float, default=0.0, metavar="SHARE",
                   help="self-training: train a first model on the labels (MODEL.round1.pt), add its SHARE x "
                        "(expected - labelled) best picks on each training micrograph to the labels, and train the "
                        "model from the start on both, each round half the --epochs. 0.8 raised apoferritin AP by "
                        "0.04 with 50 labels but lowered beta-galactosidase by 0.04 (default: 0 = off)")
    g.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    g.add_argument("--epochs", default="auto", metavar="E",
                   help="epochs in all, half in each round with self-training; 'auto' = %d while the labels cover "
                        "less than half the expected particles (-n), else %d: with every particle labelled 30 "
                        "epochs raised the apoferritin AP from 0.772 to 0.795 (3 seeds) (default: auto)"
                        % (EPOCHS_FEW_LABELS, EPOCHS_MOST_LABELLED))
    g.add_argument("--epoch-size", type=int, default=100, help="minibatch updates per epoch (default: 100)")
    g.add_argument("--tiles-per-batch", type=int, default=8, help="tiles per minibatch (default: 8)")
    g.add_argument("--tile-size", type=int, help="tile side in px (default: receptive field + 24 strides)")
    g.add_argument("--tile-rotation", choices=TILE_ROTATIONS, default="auto",
                   help="turn each training tile by a random angle ('any'), or by multiples of 90 degrees only "
                        "('90'; both also mirror), so that the labelled particles train in every in-plane "
                        "orientation, not 8; 'auto' = 'any' while the labels cover less than half the expected "
                        "particles (-n), else '90'. With 50 / 200 apoferritin labels 'any' raised the AP from "
                        "0.654 / 0.712 to 0.713 / 0.747 (3 seeds); with every particle labelled it was level "
                        "with '90' and trains longer (0.113 against 0.082 s per update in bfloat16) (default: auto)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic of the feature layers in training: 'bfloat16' (weights, loss and picking stay "
                        "float32) trains in about two thirds of the time on a CPU with bfloat16 instructions "
                        "(AVX512-BF16 or AMX); 'auto' = 'bfloat16' on such a CPU, else 'float32' (default: auto)")
    g.add_argument("--intensity-jitter", default="auto", metavar="A",
                   help="multiply each training tile by exp(u) and add v, u and v uniform in [-A, A] (the images "
                        "are normalised), so that micrographs of other contrast score as well; 'auto' = 0.2 while "
                        "the labels cover less than half the expected particles (-n), else 0; 0 = off. With 50-500 "
                        "labels 0.2 raised the AP by 0.01-0.02; with most particles labelled it lowered it "
                        "(default: auto)")
    g.add_argument("--patience", type=int,
                   help="with validation: stop after N epochs without a new best epoch and keep the best epoch "
                        "(default: off: every epoch trains, the model is the mean weights of the later epochs)")
    g.add_argument("--seed", type=int, default=0, help="random seed: sampling, initialisation, splits (default: 0)")
    g = p.add_argument_group("runtime and output")
    g.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0 = torch's choice)")
    g.add_argument("-d", "--device", type=int, default=-1, help="GPU index, -1 for CPU (default: -1)")
    g.add_argument("--scale", type=float,
                   help="preprocessing scale of the images: raw pixels per image pixel (default: from "
                        "preprocess.json, else 1)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint beside -o")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("-o", "--output", required=True, help="model file to write (MODEL.pt)")


def number_or_auto(flag, value, accepted):
    """'auto' as it is, else `value` as a float; a clear error naming `flag` otherwise."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise TopazPuError("%s %r: %s or 'auto'" % (flag, value, accepted))


def main(args):
    from topazpu_core.sampling import split_micrographs
    from topazpu_core.training import TrainConfig, epochs_for, fit, kept_weights, label_holdout, load_micrographs

    from topazpu_core.checkpoint import torch_device

    device = torch_device(args.device)
    if args.num_particles is None and args.pi is None:
        raise TopazPuError("give -n (expected particles per micrograph) or --pi")
    autoencoder = number_or_auto("--autoencoder", args.autoencoder, "a number")
    intensity_jitter = number_or_auto("--intensity-jitter", args.intensity_jitter, "a number in [0, 1)")
    label_radius = number_or_auto("--label-radius", args.label_radius, "a number of px")
    epochs = args.epochs if args.epochs == "auto" else epochs_for(args.epochs, None, None)  # checked before loading
    train, info = load_micrographs(args.train_images, args.train_targets)
    validation = None
    if not any(len(m.x) for m in train):
        raise TopazPuError("%s: no labelled particle on any of the %d training micrographs (the log says how "
                           "many coordinates fell outside the images)" % (args.train_targets, len(train)))
    if args.test_images or args.test_targets:
        if not (args.test_images and args.test_targets):
            raise TopazPuError("--test-images and --test-targets go together")
        val, _ = load_micrographs(args.test_images, args.test_targets)
        clash = sorted({m.name for m in val} & {m.name for m in train})
        if clash:
            raise TopazPuError("%s: micrographs in both training and test sets: %s" % (args.test_images, ", ".join(clash[:5])))
        validation = "test set %s" % args.test_targets
    elif args.k_fold or args.val_fraction > 0:
        labelled = [m for m in train if len(m.x)]
        if len(labelled) < 2:
            logger.warning("only %d labelled micrograph: no validation split, keeping the last epoch", len(labelled))
            val = []
        else:
            _, val_names = split_micrographs([m.name for m in labelled], [len(m.x) for m in labelled],
                                             val_fraction=args.val_fraction, k_fold=args.k_fold, fold=args.fold,
                                             seed=args.seed)
            val = [m for m in train if m.name in set(val_names)]
            train = [m for m in train if m.name not in set(val_names)]
            validation = "held-out micrographs (%s)" % ("fold %d of %d" % (args.fold, args.k_fold) if args.k_fold
                                                         else "fraction %g" % args.val_fraction)
    elif args.val_labels > 0:
        if not 0 < args.val_labels < 1:
            raise TopazPuError("--val-labels %g: a fraction between 0 and 1" % args.val_labels)
        train, val = label_holdout(train, args.val_labels, seed=args.seed)
        validation = "held-out labels (%g)" % args.val_labels
    else:
        val = []
    logger.info("topazpu train: %s", " ".join(sys.argv[1:]))
    logger.info("%d training micrographs (%d labels), %d validation micrographs (%d targets)",
                len(train), sum(len(m.x) for m in train), len(val), sum(len(m.x) for m in val))
    config = TrainConfig(
        particle_radius=args.particle_radius, method=args.objective, architecture=args.arch, units=args.units,
        label_radius=label_radius, n_per_micrograph=args.num_particles, pi=args.pi, slack=args.slack,
        autoencoder=autoencoder,
        nnpu_beta=args.nnpu_beta, nnpu_gamma=args.nnpu_gamma, learning_rate=args.learning_rate,
        tile_size=args.tile_size, tiles_per_batch=args.tiles_per_batch, intensity_jitter=intensity_jitter,
        background_ring=args.background_ring, tile_rotation=args.tile_rotation, precision=args.precision,
        epochs=epochs,
        epoch_size=args.epoch_size, patience=args.patience, seed=args.seed, threads=args.threads or None,
        scale=args.scale if args.scale is not None else info.get("scale", 1.0),
        normalization=info.get("normalization", "gmm"), start_model=args.start_model,
        pseudo_labels=args.pseudo_labels)
    meta = fit(config, train, val, args.output, resume=args.resume, progress=not args.no_progress, device=device,
               validation=validation)
    print("model: %s  %s  validation AP %s%s  threshold %.3f" % (
        args.output, kept_weights(meta), "%.4f" % meta["val_ap"] if meta["val_ap"] is not None else "n/a",
        " (%s)" % meta["val_estimate"] if meta.get("val_estimate") else "", meta["threshold"]))
