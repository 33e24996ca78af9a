"""Scoring micrographs and turning score maps into picks.

`pick_image` = score every pixel (models.score_map, tiled so memory stays bounded) ->
non-maximum suppression (nms) with an edge margin, threshold and per-micrograph cap.
Scores are the network's logits, averaged over orientations. They rank picks; they are not
calibrated probabilities of a particle (training pulls the mean over all pixels towards the
small prior pi, so most picks score below 0): use the model's threshold ('auto', the score
above which 1.1 x the expected particles per micrograph are picked). All lengths are in px of the
images given.
"""
import dataclasses
import logging
import os
from typing import Optional

import numpy as np

from topazpu_core.coordinates import Coordinates
from topazpu_core.errors import TopazPuError, require_some_readable
from topazpu_core.models import score_map
from topazpu_core.nms import non_maximum_suppression
from topazpu_core.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PickOptions:
    radius: float  # NMS radius
    threshold: float = -np.inf
    max_picks: Optional[int] = None
    edge_margin: float = 0.0
    dense: bool = False  # exact shift-and-stitch scoring instead of strided + upsampling
    orientations: int = 4  # average the logits over 1, 4 (rotations) or 8 (and flips) orientations

    def scaled(self, factor):
        """The same options for images `factor` times smaller (lengths divided)."""
        return dataclasses.replace(self, radius=self.radius / factor, edge_margin=self.edge_margin / factor)


def pick_image(model, image, options: PickOptions):
    """-> (x, y, score) arrays for one preprocessed image, best first."""
    scores = score_map(model, image, dense=options.dense, orientations=options.orientations)
    ys, xs, s = non_maximum_suppression(scores, options.radius, threshold=options.threshold,
                                        max_picks=options.max_picks, edge_margin=int(np.ceil(options.edge_margin)))
    return xs.astype(np.float64), ys.astype(np.float64), s.astype(np.float64)


def pick_images(model, named_images, options: PickOptions, progress=False):
    """named_images: iterable of (image_name, 2-D array). -> Coordinates in the images' frame."""
    parts = []
    for name, image in progress_bar(named_images, desc="picking", unit="mic", enabled=progress):
        x, y, s = pick_image(model, image, options)
        parts.append(Coordinates.from_arrays(np.full(len(x), name, dtype=object), x, y, s))
    return Coordinates.concat(parts) if parts else Coordinates.empty()


def _pick_files(model, paths, todo_images, options, factor, journal, progress):
    """Common driver of pick_raw_files and pick_preprocessed_files.

    todo_images(todo) yields (path, image_name, image, output shape) for the files still to
    pick; picks are multiplied by `factor`. Files already in the journal are not picked again.
    -> (Coordinates in the order of `paths`, {image_name: output shape}).
    """
    results, todo = {}, []
    for p in paths:
        done = journal.load(p) if journal is not None else None
        if done is None:
            todo.append(p)
        else:
            results[p] = done
    if journal is not None and journal.n_resumed:
        logger.info("resuming: %d of %d micrographs already picked in %s", journal.n_resumed, len(paths),
                    journal.folder)
    bar = progress_bar(total=len(paths), initial=len(paths) - len(todo), desc="picking", unit="mic", enabled=progress)
    if todo:
        for path, name, image, shape in todo_images(todo):
            x, y, s = pick_image(model, image, options)
            x, y = x * factor, y * factor
            if journal is not None:
                journal.save(path, name, x, y, s, shape)
            results[path] = (name, Coordinates.from_arrays(np.full(len(x), name, dtype=object), x, y, s),
                             tuple(shape))
            bar.update(1)
    bar.close()
    ordered = [results[p] for p in paths if p in results]
    coords = Coordinates.concat([c for _, c, _ in ordered]) if ordered else Coordinates.empty()
    return coords, {name: shape for name, _, shape in ordered}


def pick_raw_files(model, metadata, paths, options: PickOptions, seed=0, progress=False, journal=None):
    """Preprocess raw micrographs as the model was trained, pick, return picks in the raw frame.

    options are in raw-micrograph px. Unreadable micrographs are skipped and reported.
    journal: a PickJournal (resumable run) or None.
    -> (Coordinates, {image_name: raw shape}, [(skipped path, reason)]).
    """
    from topazpu_core.images import image_shape
    from topazpu_core.preprocessing import fit_dataset, preprocess_images

    scale = float(metadata.get("scale", 1.0))
    method = metadata.get("normalization", "gmm")
    paths = [os.fspath(p) for p in paths]
    skipped = []

    def todo_images(todo):
        dataset_fit = None
        if method == "gmm":  # the data-set fit covers every micrograph, picked before or not
            dataset_fit = journal.load_fit() if journal is not None else None
            if dataset_fit is None:
                dataset_fit = fit_dataset(paths, scale, seed=seed, progress=False)
                if dataset_fit is None:
                    return
                if journal is not None:
                    journal.save_fit(dataset_fit)
        given = {os.path.abspath(p): p for p in todo}
        for image, params in preprocess_images(todo, scale, method=method, seed=seed, progress=False,
                                               skipped=skipped, dataset_fit=dataset_fit):
            yield given[params["source"]], params["image_name"], image, tuple(image_shape(params["source"]))

    coords, shapes = _pick_files(model, paths, todo_images, options.scaled(scale), scale, journal, progress)
    require_some_readable(paths, shapes, skipped)
    return coords, shapes, skipped


def pick_preprocessed_files(model, paths, options: PickOptions, factor=1.0, progress=False, journal=None):
    """Pick already preprocessed micrographs; picks (and shapes) multiplied by `factor`.
    -> (Coordinates, {image_name: shape x factor}, [(skipped path, reason)])."""
    from topazpu_core.images import image_name, read_image

    paths = [os.fspath(p) for p in paths]
    skipped = []

    def todo_images(todo):
        for p in todo:
            try:
                image = read_image(p)
            except TopazPuError as e:  # a corrupt micrograph is reported and skipped
                logger.warning("skipping %s", e)
                skipped.append((p, str(e)))
                continue
            yield p, image_name(p), image, tuple(int(np.floor(d * factor)) for d in image.shape)

    coords, shapes = _pick_files(model, paths, todo_images, options, factor, journal, progress)
    require_some_readable(paths, shapes, skipped)
    return coords, shapes, skipped
