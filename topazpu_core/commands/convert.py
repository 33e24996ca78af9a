"""Convert particle coordinates between formats, with thresholding and rescaling.

Formats: coord (Topaz TSV), star (RELION 3.0/3.1+), box (EMAN; a directory of per-micrograph
files, needs --boxsize), json (EMAN2 _info.json; a directory), csv (with a header, CryoPPP
form included), cs (cryoSPARC; writing needs --image-dir for the micrograph shapes).
Input formats are detected from the extension (or the files in a directory) unless --from
is given; the output format from OUT's extension unless --to is given.

Inputs are concatenated; scores below -t are dropped; coordinates are multiplied by
-x UP and divided by -s DOWN (floats, not rounded).

Examples:
  topazpu convert picks.txt -o picks.star
  topazpu convert run_data.star -o boxes/ --to box --boxsize 64
  topazpu convert picks_bin4.txt -x 4 -o picks.cs --image-dir Micrographs/
  topazpu convert particles.csv -t -3 -o picks.txt
"""
import logging
import os

from topazpu_core.coordinates import (
    DIRECTORY_FORMATS, FORMATS, Coordinates, match_image_names, read_coordinates, write_coordinates)
from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("inputs", nargs="+", metavar="IN",
                        help="coordinate files, or directories of .box / _info.json files")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (a directory for box and json)")
    fmt = parser.add_argument_group("formats")
    fmt.add_argument("--from", dest="from_format", choices=("auto",) + FORMATS, default="auto",
                     help="input format (default: auto, from the extension)")
    fmt.add_argument("--to", dest="to_format", choices=("auto",) + FORMATS, default="auto",
                     help="output format (default: auto, from the extension of OUT)")
    fmt.add_argument("--boxsize", type=float, default=None, metavar="N",
                     help="box size in output pixels, needed for --to box (default: none)")
    fmt.add_argument("--image-dir", default=None, metavar="DIR",
                     help="micrographs in the OUTPUT pixel frame: their shapes are written to .cs "
                          "files and image names are matched to their file names (default: none)")
    tr = parser.add_argument_group("selection and scaling")
    tr.add_argument("-t", "--threshold", type=float, default=None,
                    help="keep coordinates with score >= THRESHOLD (default: keep all)")
    tr.add_argument("-s", "--down-scale", type=float, default=1.0, metavar="DOWN",
                    help="divide coordinates by this factor: input pixels per output pixel (default: 1)")
    tr.add_argument("-x", "--up-scale", type=float, default=1.0, metavar="UP",
                    help="multiply coordinates by this factor: output pixels per input pixel (default: 1)")


def read_image_shapes(image_dir):
    """dict image name -> (height, width) of the micrographs in `image_dir` (MRC headers only)."""
    from topazpu_core.images import image_name, image_shape, list_images

    if not os.path.isdir(image_dir):
        raise TopazPuError("%s: --image-dir is not a directory" % image_dir)
    paths = list_images(image_dir)
    if not paths:
        raise TopazPuError("%s: no micrographs found (--image-dir)" % image_dir)
    return {image_name(p): tuple(int(v) for v in image_shape(p)) for p in paths}


def convert(inputs, output, from_format="auto", to_format="auto", threshold=None, down_scale=1.0,
            up_scale=1.0, box_size=None, image_shapes=None):
    """Read `inputs`, select and rescale, write `output`. Returns (coords written, files written)."""
    if not (down_scale > 0 and up_scale > 0):
        raise TopazPuError("%s: scale factors must be positive (-s %g, -x %g)" % (output, down_scale, up_scale))
    coords = Coordinates.concat([read_coordinates(p, from_format) for p in inputs])
    source = inputs[0] if len(inputs) == 1 else "%s (and %d more inputs)" % (inputs[0], len(inputs) - 1)
    if threshold is not None:
        if coords.has_scores:
            n = len(coords)
            coords = coords.subset(coords.score >= threshold)
            logger.info("kept %d of %d coordinates with score >= %g", len(coords), n, threshold)
        else:
            logger.warning("%s: no scores in the input; -t %g ignored", source, threshold)
    if up_scale != 1.0 or down_scale != 1.0:
        coords = coords.scaled(up_scale / down_scale)
    if image_shapes is not None:
        coords = match_image_names(coords, list(image_shapes), source)
    files = write_coordinates(coords, output, to_format, box_size=box_size, image_shapes=image_shapes)
    return coords, files


def main(args):
    image_shapes = read_image_shapes(args.image_dir) if args.image_dir else None
    coords, files = convert(
        args.inputs, args.output, from_format=args.from_format, to_format=args.to_format,
        threshold=args.threshold, down_scale=args.down_scale, up_scale=args.up_scale,
        box_size=args.boxsize, image_shapes=image_shapes)
    where = args.output
    if len(files) > 1 or (args.to_format in DIRECTORY_FORMATS):
        where = "%s (%d files)" % (args.output, len(files))
    print("wrote %d coordinates on %d micrographs to %s" % (len(coords), len(coords.image_names()), where))
    return 0
