"""Tying coordinate files to micrographs: image-name matching and out-of-image filtering."""
import difflib
import logging
import re

import numpy as np

from topazpu_core.coordinates.table import micrograph_name, strip_pick_suffix
from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)

# cryoSPARC prefixes uploaded files with a long numeric uid ("012345678901234567890_mic.mrc")
# and suffixes its motion-corrected outputs.
_CRYOSPARC_PREFIX = re.compile(r"^\d{6,}_")
_CRYOSPARC_SUFFIXES = ("_patch_aligned_doseweighted", "_patch_aligned", "_rigid_aligned_doseweighted",
                       "_rigid_aligned", "_doseweighted")


def _variants(name):
    """Progressively normalised forms of a name: itself, base name, no picker suffix, no cryoSPARC marks."""
    forms = [name, micrograph_name(name)]
    forms.append(strip_pick_suffix(forms[-1]))
    bare = _CRYOSPARC_PREFIX.sub("", forms[-1])
    for suffix in _CRYOSPARC_SUFFIXES:
        if bare.endswith(suffix) and len(bare) > len(suffix):
            bare = bare[: -len(suffix)]
            break
    forms.append(bare)
    seen, out = set(), []
    for f in forms:
        if f and f not in seen:
            seen.add(f)
            out.append(f)
    return out


def _known_lookup(known):
    """dict normalised form -> known name, dropping forms shared by two known names."""
    lookup, clash = {}, set()
    for name in known:
        for form in _variants(name)[1:]:
            if form in lookup and lookup[form] != name:
                clash.add(form)
            lookup.setdefault(form, name)
    for form in clash:
        del lookup[form]
    for name in known:  # exact names always win
        lookup[name] = name
    return lookup


def _unmatched_message(source, unmatched, n_names, known):
    shown = []
    for name in unmatched[:5]:
        near = difflib.get_close_matches(name, known, n=2, cutoff=0.5)
        shown.append("%r (nearest: %s)" % (name, ", ".join(repr(n) for n in near) if near else "none"))
    more = " and %d more" % (len(unmatched) - 5) if len(unmatched) > 5 else ""
    if not known:
        return "%s: %d image names match no micrograph: no micrographs were given" % (source, n_names)
    return ("%s: %d of %d image names match no micrograph: %s%s; known micrographs (%d) include %s"
            % (source, len(unmatched), n_names, "; ".join(shown), more, len(known),
               ", ".join(repr(k) for k in known[:3])))


def match_image_names(coords, image_names, source, drop_unmatched=False):
    """Rename coordinates' image names to the given micrographs' names.

    image_names: micrograph names or paths (a path counts by its base name minus a known image
    extension). A coordinate name matches when it equals a known name, or after removing a
    directory and image extension, a picker suffix ("_autopick", "_info", ...), or cryoSPARC's
    numeric prefix and motion-correction suffix. Unmatched names raise a TopazPuError naming
    `source`, up to 5 unmatched names and their nearest known names; with drop_unmatched=True
    their coordinates are dropped with a warning instead (an error still if nothing matches).
    """
    known = sorted({micrograph_name(n) for n in image_names})
    if len(coords) == 0:
        return coords
    lookup = _known_lookup(known)
    names = coords.image_names()
    mapping, unmatched = {}, []
    for name in names:
        target = next((lookup[f] for f in _variants(name) if f in lookup), None)
        if target is None:
            unmatched.append(name)
        else:
            mapping[name] = target
    renamed = [n for n, t in mapping.items() if n != t]
    if renamed:
        logger.info("%s: matched %d image name(s) to micrographs by base name, e.g. %r -> %r",
                    source, len(renamed), renamed[0], mapping[renamed[0]])
    if unmatched and (not drop_unmatched or not mapping):
        raise TopazPuError(_unmatched_message(source, unmatched, len(names), known))
    keep = np.array([n in mapping for n in coords.image_name], dtype=bool)
    out = coords.subset(keep)
    if unmatched:
        logger.warning("%s: dropped %d coordinates on %d image(s) that match no micrograph, e.g. %r",
                       source, int((~keep).sum()), len(unmatched), unmatched[0])
    out.image_name = np.array([mapping[n] for n in out.image_name], dtype=object)
    return out


def inside_mask(coords, shapes):
    """Boolean mask of coordinates inside their image: -0.5 <= x < width - 0.5 (same for y),
    so rounding always gives a valid pixel index. Images missing from `shapes` count as inside."""
    keep = np.ones(len(coords), dtype=bool)
    for name, idx in coords.indices_by_image().items():
        if name not in shapes:
            continue
        h, w = shapes[name][:2]
        x, y = coords.x[idx], coords.y[idx]
        keep[idx] = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    return keep


def drop_outside(coords, shapes, source):
    """Drop coordinates outside their image (shapes: image name -> (height, width)); warn with the count."""
    keep = inside_mask(coords, shapes)
    n_out = int((~keep).sum())
    missing = [n for n in coords.indices_by_image() if n not in shapes]
    if missing:
        logger.debug("%s: no shape for %d image(s), their coordinates kept: %s", source, len(missing), missing[:5])
    if n_out:
        images = sorted(set(coords.image_name[~keep].tolist()))
        logger.warning("%s: dropped %d of %d coordinates outside their micrograph (%d micrograph(s), e.g. %s)",
                       source, n_out, len(coords), len(images), images[0])
    return coords.subset(keep)
