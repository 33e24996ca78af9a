"""Choice lists shared by the engine and the Scipion plugin; imports nothing (no torch, no numpy).

The plugin shows these in its forms (an EnumParam stores the index, so the order of each tuple
is part of saved Scipion projects: append, never reorder) and passes the chosen name to the
engine, whose command line accepts exactly these names.
"""

# PU objectives of `topazpu train --objective` (GE-binomial, the paper's, first).
OBJECTIVES = ("GE-binomial", "GE-KL", "NNPU", "PN")

# Network architectures of `topazpu train --arch` (topazpu_core.models builds them).
ARCHITECTURES = ("resnet8", "resnet16", "conv31", "conv63", "conv127")

# Normalisation methods of `topazpu preprocess --method` (stored in a model as "normalization").
NORMALIZATIONS = ("gmm", "gmm-per-image", "affine")

# `topazpu train --tile-rotation`: each training tile rotated by a random angle, or by multiples of
# 90 degrees only (both also mirror; topazpu_core.sampling.TileSampler); 'auto' chooses
# (topazpu_core.training.tile_rotation_for).
TILE_ROTATIONS = ("auto", "any", "90")

# `topazpu train --precision`: the arithmetic of the feature layers in training; 'auto' chooses
# (topazpu_core.training.precision_for).
PRECISIONS = ("auto", "float32", "bfloat16")

# `topazpu train --start-model` besides a model file: the bundled starting model while the labels
# are few, or random weights (topazpu_core.training.start_model_for).
START_MODELS = ("auto", "none")

# `pick`/`extract --orientations`: identity; the 4 rotations by 90 degrees; and their mirror images.
ORIENTATIONS = (1, 4, 8)

# Coordinate file formats (`convert --from/--to`, `pick --format`).
COORDINATE_FORMATS = ("coord", "star", "box", "json", "csv", "cs")

# Frames of a model's lengths. A model records its lengths (particle_radius, nms_radius,
# label_radius, edge_margin) in px of its training images, and its preprocessing `scale` (raw
# micrograph px per training-image px). Particle sizes in Angstrom live only in the plugin's forms.
FRAMES = ("raw", "preprocessed")


# `-t auto`: the model's threshold picks this many per expected particle (-n) on its validation
# micrographs, or its training micrographs away from the labels. F1 = 2 TP / (picks + particles)
# rises past the count as long as the next picks are particles more often than F1 / 2, and just
# below the count threshold they still are (precision there 0.6-0.8). Measured on the sparse
# protocol, apoferritin and beta-galactosidase x 3 seeds (benchmarks/README.md): F1 at 1.1 x the
# count is 0.005-0.022 below the best F1, at 1.0 x up to 0.043 below; picks / labelled particles
# 1.00-1.25. Read by the training (topazpu_core.training.validate), the CLI help and the plugin's
# forms.
AUTO_PICKS_PER_PARTICLE = 1.1

# Non-maximum suppression radius of `pick`/`extract` (their default) and of training's validation
# and `-t auto` threshold, as a multiple of the particle radius r (`nms_radius_for`). At r, a
# weak model's second peak on the edge of a particle, 1-2 r from its centre, survives as a pick
# of its own; at 1.25 r most of them are suppressed and two touching particles (centres 2 r
# apart) are still both picked. Sparse protocol, 3 seeds (benchmarks/README.md): apoferritin
# 200 labels AP 0.685 -> 0.698 and 50 labels (seed 0) 0.593 -> 0.618, beta-galactosidase and
# the ribosome unchanged (within 0.002), F1 at -t auto as close to the best F1 or closer; 1.5 r
# and more lose AP on beta-galactosidase. Picks are matched to labels at r whatever the NMS radius.
NMS_RADIUS_FACTOR = 1.25


def nms_radius_for(particle_radius):
    """The default NMS radius for a particle radius (same frame, px)."""
    return NMS_RADIUS_FACTOR * float(particle_radius)


# Epochs of a training in all (`topazpu train --epochs`, TrainConfig; the plugin's train form, where
# 0 means 'auto'): a number, or 'auto' (topazpu_core.training.epochs_for): EPOCHS_FEW_LABELS while
# the labels cover less than half the expected particles, else EPOCHS_MOST_LABELLED. With
# self-training (`--pseudo-labels`), half in each of its two rounds.
EPOCHS_FEW_LABELS = 20
EPOCHS_MOST_LABELLED = 30

# Radius in px of the training images of the disk of positive pixels around each labelled centre
# (`topazpu train --label-radius`, TrainConfig; the plugin's train form, where 0 means 'auto'): a
# number, or 'auto' (topazpu_core.training.label_radius_for): LABEL_RADIUS_FEW_LABELS while the
# labels cover less than half the expected particles, else LABEL_RADIUS_MOST_LABELLED. 13 px at 2,
# 29 at 3; it is not the particle radius. The networks score a grid of `stride` px (4 for resnet8)
# in training, and the tiles lie at random pixel offsets: at 2 = stride / 2 a label marks the grid
# point nearest its centre in 13 of the 16 offsets and never one farther than 2 px; at 3 one to
# four points up to 3 px away.
LABEL_RADIUS_FEW_LABELS = 2
LABEL_RADIUS_MOST_LABELLED = 3

# the metadata file `topazpu preprocess` writes into its output folder
PREPROCESS_JSON = "preprocess.json"

def model_length_px(metadata, key, frame):
    """The length `key` of a model's metadata in px of `frame` micrographs: "raw" (the ones
    `pick` reads: times the model's scale) or "preprocessed" (the training images' frame).
    None when the model does not record it. The one place a model length changes frame."""
    if frame not in FRAMES:
        raise ValueError("frame must be one of %s, not %r" % (FRAMES, frame))
    value = metadata.get(key)
    if value is None:
        return None
    return float(value) * (float(metadata.get("scale") or 1.0) if frame == "raw" else 1.0)


def model_nms_radius_px(metadata, frame):
    """A model's NMS radius in px of `frame` micrographs: the `nms_radius` it records, or for a
    model trained before 5 December 2026 (none recorded) its particle radius, at which it was
    validated. None when it records neither."""
    return model_length_px(metadata, "nms_radius", frame) or model_length_px(metadata, "particle_radius", frame)
