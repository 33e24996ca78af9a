"""Scoring micrographs and turning score maps into picks.

`pick_image` = score every pixel (models.score_map, tiled so memory stays bounded) ->
non-maximum suppression (nms) -> optional edge margin and per-micrograph cap.
Scores are logits: log(p / (1 - p)), 0 is p = 0.5.
"""
import logging

import numpy as np
import torch

from topazpu_core.coordinates import Coordinates
from topazpu_core.models import score_map
from topazpu_core.nms import non_maximum_suppression

logger = logging.getLogger(__name__)


def pick_image(model, image, radius, threshold=-np.inf, max_picks=None, edge_margin=0, dense=False,
               nms_method="exact"):
    """-> (x, y, score) arrays for one preprocessed image, best first."""
    scores = score_map(model, image, dense=dense)
    ys, xs, s = non_maximum_suppression(scores, radius, threshold=threshold, max_picks=max_picks,
                                        edge_margin=int(np.ceil(edge_margin)), method=nms_method)
    return xs.astype(np.float64), ys.astype(np.float64), s.astype(np.float64)


def pick_images(model, named_images, radius, threshold=-np.inf, max_picks=None, edge_margin=0,
                dense=False, progress=False):
    """named_images: iterable of (image_name, 2-D array). -> Coordinates in the images' frame."""
    from tqdm import tqdm

    parts = []
    for name, image in tqdm(named_images, desc="picking", unit="mic", disable=not progress):
        x, y, s = pick_image(model, image, radius, threshold, max_picks, edge_margin, dense)
        parts.append(Coordinates.from_arrays(np.full(len(x), name, dtype=object), x, y, s))
    return Coordinates.concat(parts) if parts else Coordinates.empty()


def set_threads(threads):
    if threads and threads > 0:
        torch.set_num_threads(int(threads))


def resolve_threshold(value, metadata):
    """'auto' -> the model's suggested threshold (from its validation curve); else a float logit."""
    from topazpu_core.errors import TopazPuError

    if value is None or str(value) == "auto":
        return float(metadata.get("threshold", 0.0))
    try:
        return float(value)
    except ValueError:
        raise TopazPuError("threshold %r: a number (logit) or 'auto'" % (value,))


def add_pick_args(p, radius_help):
    """Options shared by `extract` and `pick`."""
    p.add_argument("-m", "--model", required=True, help="model file written by `topazpu train`")
    p.add_argument("-r", "--radius", type=float, help=radius_help)
    p.add_argument("-t", "--threshold", default="auto",
                   help="keep picks with logit >= THRESHOLD, or 'auto' = the model's validated max-F1 threshold "
                        "(default: auto); --threshold=-inf keeps every peak")
    p.add_argument("--max-per-micrograph", type=int, help="keep at most N best picks per micrograph (default: all)")
    p.add_argument("--edge-margin", type=float,
                   help="no picks closer than this to the border, px of the input micrographs "
                        "(default: the model's, half the particle radius)")
    p.add_argument("--dense", action="store_true",
                   help="exact per-pixel scoring by shift-and-stitch (stride^2 slower; default: strided + upsampling)")
    p.add_argument("--format", default="auto", help="output format: coord, star, box, json, csv, cs (default: by -o)")
    p.add_argument("--boxsize", type=int, help="box size for box output, px of the output frame")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0 = torch's choice)")
    p.add_argument("-d", "--device", type=int, default=-1, help="GPU index, -1 for CPU (default: -1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="output coordinates (TSV image_name x_coord y_coord score)")
    p.add_argument("micrographs", nargs="+", help="micrographs: files, directories, globs or @list")


def write_picks(coords, args, shapes):
    from topazpu_core.coordinates import write_coordinates

    write_coordinates(coords, args.output, fmt=args.format, box_size=args.boxsize, image_shapes=shapes)
    n_mics = len(shapes)
    print("%d particles on %d micrographs (%.1f per micrograph) -> %s"
          % (len(coords), n_mics, len(coords) / max(n_mics, 1), args.output))


def pick_raw_files(model, metadata, micrographs, radius=None, threshold=-np.inf, max_picks=None, edge_margin=None,
                   dense=False, seed=0, progress=False):
    """Preprocess raw micrographs as the model was trained, pick, return picks in the raw frame.

    radius and edge_margin are in raw-micrograph px (defaults: the model's particle radius and
    edge margin, times its scale). -> (Coordinates, {image_name: raw shape}).
    """
    from topazpu_core.images import image_shape, list_images
    from topazpu_core.normalize import preprocess_images

    scale = float(metadata.get("scale", 1.0))
    radius_pre = (radius / scale) if radius is not None else float(metadata["particle_radius"])
    paths = list_images(micrographs)
    shapes = {}

    def images():
        for image, params in preprocess_images(paths, scale, method=metadata.get("normalization", "gmm"),
                                               seed=seed, progress=False):
            shapes[params["image_name"]] = tuple(image_shape(params["source"]))
            yield params["image_name"], image

    margin_pre = (edge_margin / scale) if edge_margin is not None else float(metadata.get("edge_margin", 0))
    coords = pick_images(model, images(), radius_pre, threshold, max_picks, margin_pre, dense,
                         progress=progress)
    return coords.scaled(scale), shapes
