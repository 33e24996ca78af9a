"""Names, choice lists and defaults shared by the topazpu Scipion plugin.

The engine's choice lists come from topazpu_core.options (no torch import), so the forms offer
exactly what the engine accepts; EnumParams store indices, so those tuples only ever grow.
"""
from topazpu_core import options as _engine

# Plugin variables (Plugin._vars is one dict shared by every plugin: keep the prefix).
TOPAZPU_PYTHON = 'TOPAZPU_PYTHON'        # interpreter that runs `python -m topazpu_core`
TOPAZPU_THREADS = 'TOPAZPU_THREADS'      # default torch threads per engine job when not set by the protocol

ENGINE_MODULE = 'topazpu_core'

# The plugin's name in Scipion's protocol titles and protocol tree (the package is scipion_topazpu).
DISPLAY_NAME = 'topazpu'

# Objectives, in the order shown in the form (GE-binomial is the default, as in the paper).
OBJECTIVES = list(_engine.OBJECTIVES)
OBJECTIVE_GE_BINOMIAL = OBJECTIVES.index('GE-binomial')

# Architectures, in the order shown in the form.
ARCHITECTURES = list(_engine.ARCHITECTURES)
ARCH_RESNET8 = ARCHITECTURES.index('resnet8')

# Normalisation methods of `topazpu preprocess`.
NORMALIZATIONS = list(_engine.NORMALIZATIONS)
NORM_GMM = NORMALIZATIONS.index('gmm')

# Orientations averaged by the picker (`--orientations`).
ORIENTATIONS = list(_engine.ORIENTATIONS)

# The model's threshold picks this many per expected particle (shown in the forms' help).
AUTO_PICKS_PER_PARTICLE = _engine.AUTO_PICKS_PER_PARTICLE

# Two picks are at least this many particle radii apart (non-maximum suppression), and
# the engine's rule for it.
NMS_RADIUS_FACTOR = _engine.NMS_RADIUS_FACTOR
nms_radius_for = _engine.nms_radius_for

# Training epochs in all (half in each round with self-training): the form's 0 is the engine's 'auto',
# EPOCHS_FEW_LABELS while the labels cover less than half the expected particles, else EPOCHS_MOST_LABELLED.
EPOCHS_AUTO = 0
EPOCHS_FEW_LABELS = _engine.EPOCHS_FEW_LABELS
EPOCHS_MOST_LABELLED = _engine.EPOCHS_MOST_LABELLED

# Radius in px of the downsampled micrographs of the disk of positive pixels around each label: the
# form's 0 is the engine's 'auto', LABEL_RADIUS_FEW_LABELS while the labels cover less than half the
# expected particles, else LABEL_RADIUS_MOST_LABELLED.
LABEL_RADIUS_AUTO = 0
LABEL_RADIUS_FEW_LABELS = _engine.LABEL_RADIUS_FEW_LABELS
LABEL_RADIUS_MOST_LABELLED = _engine.LABEL_RADIUS_MOST_LABELLED

# What training starts from: 'auto' = the engine's bundled starting model while the labels are few
# (resnet8 with 32 units only), 'none' = random weights.
START_MODELS = list(_engine.START_MODELS)
START_MODEL_AUTO = START_MODELS.index('auto')

# How the expected number of particles is given to the training.
PRIOR_PARTICLES = 0
PRIOR_PI = 1

# Validation modes of the training.
VAL_FRACTION = 0
VAL_SET = 1
VAL_NONE = 2
VAL_LABELS = 3  # a fraction of the labels (their micrographs stay in training)

# Threshold modes of the picker.
THRESHOLD_MODEL = 0
THRESHOLD_EXPLICIT = 1

# Coordinate formats of the import protocol: the engine's format names, 'auto' first.
COORD_FORMATS = ['auto'] + list(_engine.COORDINATE_FORMATS)
COORD_FORMAT_LABELS = ['auto (by extension and content)', 'Topaz TSV (.txt/.tsv)', 'RELION STAR',
                       'EMAN box', 'EMAN2 json', 'CSV', 'cryoSPARC .cs']

# Attribute names added to Scipion objects.
SCORE_ATTR = '_topazpuScore'             # Float on each Coordinate: the picker's logit score
NORM_ATTR = '_topazpuNormalization'      # String (JSON) on each normalised Micrograph
SET_SCALE_ATTR = '_topazpuScale'         # Float on a normalised SetOfMicrographs
SET_METHOD_ATTR = '_topazpuMethod'       # String on a normalised SetOfMicrographs

# Box size = BOX_FACTOR x particle diameter (rounded up to an even number of pixels).
BOX_FACTOR = 1.5
# Relative tolerance when comparing pixel sizes (model vs micrographs).
PIXEL_SIZE_TOLERANCE = 0.05
