"""Labels, the class prior pi, micrograph-level splits and the training tile sampler.

Labels: every pixel within the label radius of a labelled centre is positive. With a background
radius (`background_map`; `train --background-ring` uses the NMS radius, 1.25 x the particle
radius; off by default) the pixels around it out to that radius, outside every label disk, are
background: they lie on the labelled particle, off its centre, and no other particle's centre is
that close. All others are unlabelled.
pi (positive fraction over all pixels) comes from `--pi` or from the expected number of
particles per micrograph: pi = n * disk_pixels(radius) / pixels per micrograph, with the disk
counted in 2-D (29 pixels at radius 3).

Training is dense: a minibatch is a stack of square tiles cut from the micrographs, each
rotated by a random angle (`any_angle`; else by a multiple of 90 degrees only), maybe flipped,
maybe jittered in contrast and brightness (`intensity_jitter`), and the network's whole output
grid on each tile is used. Half the tiles
are placed so that they contain a random labelled particle (so every batch has positives even
with 10 labels), the other half uniformly.
"""
import numpy as np
from scipy import ndimage, special

from topazpu_core.errors import TopazPuError
from topazpu_core.nms import disk_offsets

# values of a training tile's label grid (TileSampler.sample)
POSITIVE, UNLABELLED, BACKGROUND = 1, 0, -1

# Spline order of the image when a training tile is turned by any angle (TileSampler.cut_rotated).
# Linear interpolation (1) keeps 45 % of white noise's variance, cubic (3) 78 %: the turned tiles
# look like the micrographs the network picks, not like smoothed ones. Apoferritin with all labels
# and `--tile-rotation any`, seed 0: 0.753 linear, 0.775 cubic (0.785 with 90-degree turns).
ROTATION_SPLINE_ORDER = 3
# Pixels of edge repeated around a micrograph before its spline coefficients are computed, as
# scipy.ndimage pads for mode "nearest": the coefficients near the edge then match that mode's.
SPLINE_PAD = 12


def label_centred_tiles(n_tiles):
    """How many of a batch of `n_tiles` tiles the sampler centres on a labelled particle (half)."""
    return n_tiles // 2


def disk_pixels(radius):
    """Number of pixels labelled positive around one centre (29 at radius 3, 13 at radius 2)."""
    return len(disk_offsets(radius)[0])


def pi_from_particles(n_per_micrograph, radius, pixels_per_micrograph):
    """Positive fraction over all pixels when each micrograph holds `n_per_micrograph` particles."""
    pi = n_per_micrograph * disk_pixels(radius) / float(pixels_per_micrograph)
    if not 0 < pi < 1:
        raise TopazPuError("expected %g particles per micrograph at label radius %g gives pi = %.4g, "
                           "outside (0, 1): lower -n or the radius" % (n_per_micrograph, radius, pi))
    return pi


def unlabelled_positive_fraction(pi, labelled_fraction, background_fraction=0.0):
    """Fraction of positives among the unlabelled pixels, the target of the GE objectives: the
    positives not labelled, (pi - labelled_fraction), among the pixels neither labelled nor
    background (no positive lies in the background ring around a label)."""
    if labelled_fraction >= pi:
        raise TopazPuError(
            "the labels already cover %.4g of all pixels, at least the expected positive fraction pi = %.4g: "
            "raise -n/--pi or use --objective PN" % (labelled_fraction, pi))
    return (pi - labelled_fraction) / (1.0 - labelled_fraction - background_fraction)


def _stamp(shape, rows, cols, disk):
    """Boolean (h, w) map with the disk offsets stamped around integer centres (rows, cols)."""
    out = np.zeros(shape, dtype=bool)
    if len(rows):
        dy, dx = disk
        py = np.asarray(rows, np.int64)[:, None] + dy[None]
        px = np.asarray(cols, np.int64)[:, None] + dx[None]
        ok = (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
        out[py[ok], px[ok]] = True
    return out


def label_map(shape, x, y, radius):
    """Boolean (H, W) map: True within `radius` of any centre (x = column, y = row)."""
    return _stamp(shape, np.rint(np.asarray(y)), np.rint(np.asarray(x)), disk_offsets(radius))


def background_map(shape, x, y, label_radius, background_radius, labelled=None):
    """Boolean (H, W) map of the background ring: within `background_radius` of a centre and
    not within `label_radius` of any (empty when background_radius <= label_radius).
    `labelled`: label_map(shape, x, y, label_radius) when the caller has it already."""
    if labelled is None:
        labelled = label_map(shape, x, y, label_radius)
    return label_map(shape, x, y, background_radius) & ~labelled


def label_pixel_counts(shape, x, y, label_radius, background_radius=0.0):
    """(labelled, background) pixels of one micrograph: the True pixels of `label_map` and of
    `background_map`, from one label map (one micrograph's maps at a time)."""
    labelled = label_map(shape, x, y, label_radius)
    if background_radius <= label_radius:
        return int(labelled.sum()), 0
    return int(labelled.sum()), int(background_map(shape, x, y, label_radius, background_radius, labelled).sum())


def split_micrographs(names, n_labels, val_fraction=None, k_fold=None, fold=0, seed=0):
    """Micrograph-level train/validation split of `names` (those with labels).

    k-fold: micrographs are ordered by label count, dealt round-robin into k folds after a
    seeded shuffle within equal counts (stratified by label count); fold `fold` validates.
    Otherwise a seeded random `val_fraction` of micrographs (at least one) validates.
    Returns (train_names, val_names), each sorted.
    """
    names = list(names)
    rng = np.random.default_rng(seed)
    if k_fold:
        if not 2 <= k_fold <= len(names):
            raise TopazPuError("-k %d folds needs between 2 and %d labelled micrographs" % (k_fold, len(names)))
        if not 0 <= fold < k_fold:
            raise TopazPuError("--fold %d must be in 0..%d" % (fold, k_fold - 1))
        keys = rng.permutation(len(names))
        order = sorted(range(len(names)), key=lambda i: (-n_labels[i], keys[i]))
        val = [names[i] for j, i in enumerate(order) if j % k_fold == fold]
    else:
        n_val = max(1, int(round(len(names) * (val_fraction or 0))))
        if len(names) < 2:
            raise TopazPuError("a validation split needs at least 2 labelled micrographs, got %d" % len(names))
        n_val = min(n_val, len(names) - 1)
        val = [names[i] for i in rng.permutation(len(names))[:n_val]]
    train = sorted(set(names) - set(val))
    return train, sorted(val)


class TileSampler:
    """Draws augmented training tiles and their output-grid labels.

    images: list of 2-D float32 arrays (or memory maps); centres: list of (N, 2) arrays (x, y)
    of labelled particles per image. label_radius (px): each tile's labels are computed from the
    centres near it, exactly as `label_map` would mark them, so no full-size label map is kept.
    `grid` = (stride, offset): output j of a tile is centred on tile pixel offset + stride * j.
    background_radius: pixels within it of a centre and outside every label disk are labelled
    BACKGROUND, exactly as `background_map` marks them (0: no background ring).
    any_angle: each tile is turned about its centre by an angle drawn uniformly from [0, 360)
    degrees and maybe mirrored, its labels with it (nearest neighbour; the image by a cubic spline
    of the whole micrograph, ROTATION_SPLINE_ORDER, whose coefficients are computed once per
    micrograph and kept: a float32 copy of each training micrograph); without it, by a multiple
    of 90 degrees and maybe mirrored. A particle is seen in every in-plane orientation, not 8:
    apoferritin with 50 labels AP 0.698 against 0.643 (benchmarks/README.md).
    intensity_jitter = a: each tile's values are multiplied by exp(u) and shifted by v, u and v
    drawn uniformly from [-a, a] (the images are normalised, so v is in units of their spread).
    Micrographs differ in contrast after normalisation (ice thickness, defocus); beta-galactosidase
    micrograph 15_30_21, with a spread 0.86 x the others', scored 0.68 AP held out with 50 labels
    and 0.74 with a = 0.2 (training.intensity_jitter_for says when it applies).
    """

    def __init__(self, images, label_radius, centres, tile_size, grid, intensity_jitter=0.0, background_radius=0.0,
                 any_angle=False):
        if not 0 <= intensity_jitter < 1:
            raise TopazPuError("intensity jitter %g: a number in [0, 1)" % intensity_jitter)
        self.intensity_jitter = float(intensity_jitter)
        self.any_angle = bool(any_angle)
        self.images, self.centres = images, centres
        self.tile = int(tile_size)
        self.stride, self.offset = grid
        areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.area_weights = areas / areas.sum()
        counts = np.array([len(c) for c in centres], dtype=np.float64)
        if counts.sum() == 0:
            raise TopazPuError("no labelled particle falls inside any training micrograph")
        self.label_weights = counts / counts.sum()
        self._disk = disk_offsets(float(label_radius))
        self.background_radius = float(background_radius)
        self._ring = disk_offsets(self.background_radius) if self.background_radius > label_radius else None
        self._reach = int(np.floor(max(float(label_radius), self.background_radius)))
        self._coefficients = {}  # per image, once turned tiles need it: _spline_coefficients
        self._rounded = []  # per image: rounded (rows, columns) of the centres, sorted by row
        for c in centres:
            c = np.asarray(c, dtype=np.float64).reshape(-1, 2)
            ry = np.rint(c[:, 1]).astype(np.int64)
            rx = np.rint(c[:, 0]).astype(np.int64)
            order = np.argsort(ry, kind="stable")
            self._rounded.append((ry[order], rx[order]))

    def _region_labels(self, idx, y_lo, y_hi, x_lo, x_hi):
        """Labels of image `idx` in rows y_lo..y_hi, columns x_lo..x_hi (inclusive), int8:
        POSITIVE where label_map is True, BACKGROUND where background_map is, else UNLABELLED."""
        ry, rx = self._rounded[idx]
        r = self._reach
        a = np.searchsorted(ry, y_lo - r, side="left")
        b = np.searchsorted(ry, y_hi + r, side="right")
        cy, cx = ry[a:b], rx[a:b]
        near = (cx >= x_lo - r) & (cx <= x_hi + r)
        shape, rows, cols = (y_hi - y_lo + 1, x_hi - x_lo + 1), cy[near] - y_lo, cx[near] - x_lo
        positive = _stamp(shape, rows, cols, self._disk)
        labels = np.where(positive, np.int8(POSITIVE), np.int8(UNLABELLED))
        if self._ring is not None:
            labels[_stamp(shape, rows, cols, self._ring) & ~positive] = BACKGROUND
        return labels

    def cut(self, idx, y0, x0):
        """Tile of image `idx` with top-left corner (y0, x0) and its labels; rows and columns outside
        the image repeat the nearest edge pixel (and its label)."""
        im = self.images[idx]
        t = self.tile
        H, W = im.shape
        if 0 <= y0 and y0 + t <= H and 0 <= x0 and x0 + t <= W:
            return (np.asarray(im[y0:y0 + t, x0:x0 + t], dtype=np.float32),
                    self._region_labels(idx, y0, y0 + t - 1, x0, x0 + t - 1))
        yi = np.clip(np.arange(y0, y0 + t), 0, H - 1)
        xi = np.clip(np.arange(x0, x0 + t), 0, W - 1)
        y_lo, y_hi, x_lo, x_hi = int(yi[0]), int(yi[-1]), int(xi[0]), int(xi[-1])  # indices ascend
        lab = self._region_labels(idx, y_lo, y_hi, x_lo, x_hi)
        return np.asarray(im[np.ix_(yi, xi)], dtype=np.float32), lab[np.ix_(yi - y_lo, xi - x_lo)]

    def _spline_coefficients(self, idx):
        """Cubic-spline coefficients of image `idx` (float32, SPLINE_PAD px wider on each side), computed
        on first use and kept: the image as `ndimage.affine_transform(image, ..., mode="nearest")`
        prefilters it, done once per micrograph instead of once per tile."""
        coef = self._coefficients.get(idx)
        if coef is None:
            padded = np.pad(np.asarray(self.images[idx], dtype=np.float64), SPLINE_PAD, mode="edge")
            coef = ndimage.spline_filter(padded, ROTATION_SPLINE_ORDER, mode="nearest", output=np.float32)
            self._coefficients[idx] = coef
        return coef

    def _turned(self, idx, y0, x0, degrees, mirror, rows, cols):
        """Tile of image `idx` at (y0, x0) turned by `degrees` about its centre (after mirroring its
        columns if `mirror`) -> its image (t, t) float32 and the labels at tile pixels (rows, cols):
        tile pixel q shows image point (y0, x0) + h + A (q - h), h the tile's centre, A the turn
        (and mirror). The image is interpolated by a cubic spline of the whole micrograph; a label
        is that of the image pixel nearest the point (clamped to the image, as `cut` repeats edges)."""
        t = self.tile
        c, s = special.cosdg(degrees), special.sindg(degrees)
        turn = np.array([[c, s], [-s, c]])
        if mirror:
            turn = turn * np.array([1.0, -1.0])  # columns of q - h change sign
        h = np.full(2, (t - 1) / 2.0)
        origin = np.array([y0, x0], dtype=np.float64) + h - turn @ h  # image point of tile pixel (0, 0)
        img = ndimage.affine_transform(self._spline_coefficients(idx), turn, origin + SPLINE_PAD, (t, t),
                                       order=ROTATION_SPLINE_ORDER, mode="nearest", prefilter=False,
                                       output=np.float32)
        H, W = self.images[idx].shape
        points = turn @ np.stack([np.ravel(rows), np.ravel(cols)]).astype(np.float64) + origin[:, None]
        py = np.clip(np.floor(points[0] + 0.5).astype(np.int64), 0, H - 1)
        px = np.clip(np.floor(points[1] + 0.5).astype(np.int64), 0, W - 1)
        y_lo, x_lo = int(py.min()), int(px.min())
        region = self._region_labels(idx, y_lo, int(py.max()), x_lo, int(px.max()))
        return img, region[py - y_lo, px - x_lo].reshape(np.shape(rows))

    def cut_rotated(self, idx, y0, x0, degrees, mirror=False):
        """The tile `cut(idx, y0, x0)` would give, turned by `degrees` about its centre (its columns
        mirrored first if `mirror`), and its labels at every pixel."""
        rows, cols = np.indices((self.tile, self.tile))
        return self._turned(idx, y0, x0, degrees, mirror, rows, cols)

    def sample(self, n_tiles, rng):
        """-> images (n, t, t) float32, labels (n, h, h) int8 on the output grid (POSITIVE,
        UNLABELLED, BACKGROUND)."""
        t = self.tile
        n_out = (t - 2 * self.offset - 1) // self.stride + 1
        xs = np.empty((n_tiles, t, t), dtype=np.float32)
        ys = np.empty((n_tiles, n_out, n_out), dtype=np.int8)
        n_pos = label_centred_tiles(n_tiles)
        grid_rows, grid_cols = np.indices((n_out, n_out)) * self.stride + self.offset
        for i in range(n_tiles):
            if i < n_pos:
                idx = rng.choice(len(self.images), p=self.label_weights)
                cx, cy = self.centres[idx][rng.integers(len(self.centres[idx]))]
                # place the particle uniformly inside the tile's output area
                y0 = int(round(cy)) - self.offset - int(rng.integers(0, self.stride * n_out))
                x0 = int(round(cx)) - self.offset - int(rng.integers(0, self.stride * n_out))
            else:
                idx = rng.choice(len(self.images), p=self.area_weights)
                H, W = self.images[idx].shape
                y0 = int(rng.integers(0, max(1, H - t + 1)))
                x0 = int(rng.integers(0, max(1, W - t + 1)))
            if self.any_angle:  # labels at the output grid's pixels only
                xs[i], ys[i] = self._turned(idx, y0, x0, float(rng.uniform(0, 360)), bool(rng.integers(2)),
                                            grid_rows, grid_cols)
                continue
            img, lab = self.cut(idx, y0, x0)
            k = int(rng.integers(4))
            img, lab = np.rot90(img, k), np.rot90(lab, k)
            if rng.integers(2):
                img, lab = img[:, ::-1], lab[:, ::-1]
            xs[i] = img
            o, s = self.offset, self.stride
            ys[i] = lab[o:o + s * n_out:s, o:o + s * n_out:s]
        a = self.intensity_jitter
        if a:  # drawn after the tiles, so the tiles and labels are those drawn without jitter
            xs *= np.exp(rng.uniform(-a, a, n_tiles)).astype(np.float32)[:, None, None]
            xs += rng.uniform(-a, a, n_tiles).astype(np.float32)[:, None, None]
        return xs, ys
