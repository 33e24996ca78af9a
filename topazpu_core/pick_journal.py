"""Resumable picking: the per-micrograph results of an unfinished `pick`/`extract` run.

While a run picks, every finished micrograph's picks (and the data-set normalisation fit of
`pick`) are written atomically into `<output>.parts/`. When the run completes, the output
file is written (atomically) and the folder is removed. If the run is killed, running the
same command again loads what is there and picks only the rest: no micrograph is lost or
picked twice, and the output equals that of an uninterrupted run.

The folder belongs to one run: `run.json` records what the results depend on (the model
file's SHA-256, the pick options, the micrograph list, the seed). A folder written by a
different run (another model, other options or micrographs) is discarded, with a log line.
"""
import hashlib
import json
import logging
import os
import shutil
import zipfile

import numpy as np

from topazpu_core.atomic import atomic_path, atomic_write
from topazpu_core.coordinates import Coordinates

logger = logging.getLogger(__name__)


def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class PickJournal:
    """`<output>.parts/`: run.json, fit.json (optional) and one .npz per picked micrograph."""

    def __init__(self, output, run_key):
        self.folder = os.fspath(output).rstrip("/" + os.sep) + ".parts"
        self.run_key = json.loads(json.dumps(run_key, sort_keys=True, default=str))
        key_path = os.path.join(self.folder, "run.json")
        if os.path.isdir(self.folder):
            try:
                with open(key_path) as f:
                    same = json.load(f) == self.run_key
            except (OSError, ValueError):
                same = False
            if not same:
                logger.info("%s: left by a different run (model, options or micrographs); starting afresh",
                            self.folder)
                shutil.rmtree(self.folder)
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder)
            with atomic_write(key_path) as f:
                json.dump(self.run_key, f, sort_keys=True, indent=1)
        self.n_resumed = 0

    def _part(self, path):
        digest = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return os.path.join(self.folder, "mic-%s.npz" % digest)

    def load(self, path):
        """-> (image_name, Coordinates, shape) recorded for micrograph `path`, or None."""
        part = self._part(path)
        if not os.path.isfile(part):
            return None
        try:
            with np.load(part, allow_pickle=False) as z:
                name = str(z["name"])
                coords = Coordinates.from_arrays(np.full(len(z["x"]), name, dtype=object), z["x"], z["y"], z["score"])
                shape = tuple(int(v) for v in z["shape"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a damaged part: pick that micrograph again
            logger.warning("%s: unreadable (%s); picking it again", part, e)
            return None
        self.n_resumed += 1
        return name, coords, shape

    def save(self, path, name, x, y, score, shape):
        with atomic_path(self._part(path)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, name=np.array(name), x=np.asarray(x, np.float64), y=np.asarray(y, np.float64),
                         score=np.asarray(score, np.float64), shape=np.asarray(shape, np.int64))

    def load_fit(self):
        from topazpu_core.preprocessing import DatasetFit

        path = os.path.join(self.folder, "fit.json")
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                return DatasetFit.from_json(json.load(f))
        except (OSError, ValueError, KeyError) as e:
            logger.warning("%s: unreadable (%s); fitting again", path, e)
            return None

    def save_fit(self, dataset_fit):
        with atomic_write(os.path.join(self.folder, "fit.json")) as f:
            json.dump(dataset_fit.to_json(), f)

    def finish(self):
        """The output is written: the parts are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
