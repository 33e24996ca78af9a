"""Scoring micrographs and turning score maps into picks.

`pick_image` = score every pixel (models.score_map, tiled so memory stays bounded) ->
non-maximum suppression (nms) with an edge margin, threshold and per-micrograph cap.
Scores are the network's logits, averaged over orientations. They rank picks; they are not
calibrated probabilities of a particle (training pulls the mean over all pixels towards the
small prior pi, so most picks score below 0): use the model's threshold ('auto', the score
above which the expected particles per micrograph are picked). All lengths are in px of the
images given.
"""
import dataclasses
import logging
import os
from typing import Optional

import numpy as np
import torch

from topazpu_core.coordinates import Coordinates
from topazpu_core.errors import TopazPuError
from topazpu_core.models import ORIENTATIONS, score_map
from topazpu_core.nms import non_maximum_suppression

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
    from tqdm import tqdm

    parts = []
    for name, image in tqdm(named_images, desc="picking", unit="mic", disable=not progress):
        x, y, s = pick_image(model, image, options)
        parts.append(Coordinates.from_arrays(np.full(len(x), name, dtype=object), x, y, s))
    return Coordinates.concat(parts) if parts else Coordinates.empty()


def require_some_picked(paths, picked, skipped):
    """Refuse a run in which no micrograph could be read (each one is named in `skipped`)."""
    if paths and not picked:
        raise TopazPuError("no readable micrograph among %d given (first: %s)"
                           % (len(paths), skipped[0][1] if skipped else "-"))


def _pick_files(model, paths, todo_images, options, factor, journal, progress):
    """Common driver of pick_raw_files and pick_preprocessed_files.

    todo_images(todo) yields (path, image_name, image, output shape) for the files still to
    pick; picks are multiplied by `factor`. Files already in the journal are not picked again.
    -> (Coordinates in the order of `paths`, {image_name: output shape}).
    """
    from tqdm import tqdm

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
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="picking", unit="mic", disable=not progress)
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
    from topazpu_core.normalize import fit_dataset, preprocess_images

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
    require_some_picked(paths, shapes, skipped)
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
    require_some_picked(paths, shapes, skipped)
    return coords, shapes, skipped


def set_threads(threads):
    if threads and threads > 0:
        torch.set_num_threads(int(threads))


def resolve_threshold(value, metadata):
    """'auto' -> the model's suggested threshold (from its validation curve); else a float logit."""
    if value is None or str(value) == "auto":
        if metadata.get("threshold", 0.0) is None:
            raise TopazPuError("this model has no suggested threshold (a checkpoint of a training without "
                               "validation): give -t with a number")
        return float(metadata.get("threshold", 0.0))
    try:
        return float(value)
    except ValueError:
        raise TopazPuError("threshold %r: a number (logit) or 'auto'" % (value,))


def add_pick_args(p, frame):
    """Options shared by `extract` and `pick`; lengths are in px of the `frame` micrographs."""
    p.add_argument("-m", "--model", required=True, help="model file written by `topazpu train`")
    p.add_argument("-r", "--radius", type=float,
                   help="NMS radius, px of the %s micrographs (default: the model's particle radius)" % frame)
    p.add_argument("-t", "--threshold", default="auto",
                   help="keep picks with score >= THRESHOLD, or 'auto' = the model's threshold, at which it picks "
                        "the expected particles per micrograph (-n of training) on its validation micrographs "
                        "(default: auto); --threshold=-inf keeps every peak")
    p.add_argument("--max-per-micrograph", type=int, help="keep at most N best picks per micrograph (default: all)")
    p.add_argument("--edge-margin", type=float,
                   help="no picks closer than this to the border, px of the %s micrographs "
                        "(default: the model's, half the particle radius)" % frame)
    p.add_argument("--dense", action="store_true",
                   help="exact per-pixel scoring by shift-and-stitch (stride^2 slower; default: strided + upsampling)")
    p.add_argument("--orientations", type=int, choices=ORIENTATIONS, default=4,
                   help="average the logits over this many orientations of each micrograph: 1, 4 (rotations "
                        "by 90 degrees; what training validates) or 8 (and their mirror images); scoring "
                        "time grows in proportion (default: 4; 1 is about 0.01-0.03 lower AP)")
    p.add_argument("--format", default="auto", help="output format: coord, star, box, json, csv, cs (default: by -o)")
    p.add_argument("--boxsize", type=int, help="box size for box output, px of the output frame")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0 = torch's choice)")
    p.add_argument("-d", "--device", type=int, default=-1, help="GPU index, -1 for CPU (default: -1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="output coordinates (TSV image_name x_coord y_coord score)")
    p.add_argument("micrographs", nargs="+", help="micrographs: files, directories, globs or @list")


def options_from_args(args, metadata, scale=1.0):
    """PickOptions from the command line, defaults from the model (scaled to the frame of -r)."""
    return PickOptions(
        radius=args.radius if args.radius is not None else float(metadata["particle_radius"]) * scale,
        threshold=resolve_threshold(args.threshold, metadata), max_picks=args.max_per_micrograph,
        edge_margin=args.edge_margin if args.edge_margin is not None else float(metadata.get("edge_margin", 0)) * scale,
        dense=args.dense, orientations=args.orientations)


def open_journal(args, command, options, extra=None):
    """The PickJournal of this command line's run (resumes an interrupted identical run)."""
    import dataclasses as dc

    from topazpu_core import __version__
    from topazpu_core.images import list_images
    from topazpu_core.pick_journal import PickJournal, file_sha256

    key = {"command": command, "version": __version__, "model_sha256": file_sha256(args.model),
           "options": dc.asdict(options), "micrographs": [os.path.abspath(p) for p in list_images(args.micrographs)]}
    key.update(extra or {})
    return PickJournal(args.output, key)


def write_picks(coords, args, shapes, skipped=(), journal=None):
    from topazpu_core.coordinates import write_coordinates

    write_coordinates(coords, args.output, fmt=args.format, box_size=args.boxsize, image_shapes=shapes)
    if journal is not None:
        journal.finish()
    n_mics = len(shapes)
    print("%d particles on %d micrographs (%.1f per micrograph) -> %s"
          % (len(coords), n_mics, len(coords) / max(n_mics, 1), args.output))
    for path, reason in skipped:
        print("skipped: %s" % reason)
