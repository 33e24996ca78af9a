"""Benchmark data sets and their seeded train/validation splits, shared by the benchmark scripts.

Each data set of the shared data folder (default ../shared/data beside the repository; override with the
environment variable TOPAZPU_DATA or --data) is described by a `DataSet`: its micrographs, its
particle file (Topaz TSV, raw pixel frame), the particle diameter and radius in raw pixels, the
preprocessing scale we use (about 16 px particle diameter after downsampling), the expected
particles per micrograph (mean labels per labelled micrograph; x1.5 for the incompletely
labelled ribosome, where -n at the label count would leave no room for unlabelled positives)
and the issue's protocol:

  apoferritin  EMPIAR-10146, 12 labelled + 1 unlabelled 1240x1200 MRC: 200 random labels from
               8 random micrographs train, the other 4 validate with ALL their particles;
               assignment radius 32 raw px; the unlabelled micrograph joins training.
               Targets: AP >= 0.85 and best F1 >= 0.85, training under 10 minutes.
  bgal         EMPIAR-10017, 10 4096x4096 JPEG: 500 labels from 7 micrographs, 3 validate.
               Target: AP >= 0.75.
  ribosome     EMPIAR-10028, 5 1024x1024 PNG, labels incomplete: 3 micrographs with all their
               labels train, 2 validate. Target: recall of labelled particles >= 0.9 at the
               model's auto threshold (AP for information).

`make_split(dataset, seed)` draws the micrographs with a seeded permutation of the sorted
labelled micrograph names, then the labels with a seeded permutation of every label on the
training micrographs (so smaller label sets are nested in larger ones for the same seed).
`write_split(split, folder)` writes the files both tools read:

  train_images.txt / val_images.txt   Topaz-style image lists (image_name<TAB>path, raw files)
  train_targets.txt / val_targets.txt  coordinates, raw frame (val: all particles)
  train_targets.pre.txt / val_targets.pre.txt  the same divided by the scale (preprocessed frame)
  split.json                           the split (names, counts, seed, data set parameters)

    python benchmarks/splits.py [--data DIR] [--seed 0] [--labels N] -o WORKDIR [DATASET ...]
"""
import argparse
import dataclasses
import glob
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from topazpu_core.coordinates import Coordinates, read_coordinates, write_coordinates  # noqa: E402
from topazpu_core.images import IMAGE_EXTENSIONS, image_name  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))


def data_root(override=None):
    """The shared data folder: `override`, else $TOPAZPU_DATA, else ../shared/data beside the repository."""
    return override or os.environ.get("TOPAZPU_DATA") or DEFAULT_DATA


@dataclasses.dataclass(frozen=True)
class DataSet:
    name: str
    folder: str  # folder name under the data root
    diameter: float  # particle diameter, raw px
    radius: float  # particle radius = assignment radius, raw px
    scale: int  # our preprocessing downsampling (integer, so Topaz can use it too)
    n_train_micrographs: int
    n_val_micrographs: int
    n_train_labels: Optional[int]  # None = all labels of the training micrographs
    unlabelled_in_training: bool  # micrographs without any label join the training images
    metric: str  # "ap+f1", "ap" or "recall": what the targets are about
    targets: Dict[str, float]  # metric name -> minimum to pass ("<name>_max": maximum of <name>)
    # labels per micrograph x this = the expected particles per micrograph (-n): > 1 where the
    # labels are incomplete (the ribosome overlay shows roughly 2 of 3 visible particles labelled)
    completeness_factor: float = 1.0
    micrograph_subdir: str = "micrographs"
    particles_file: str = "particles.tsv"

    def micrograph_dir(self, root=None):
        return os.path.join(data_root(root), self.folder, self.micrograph_subdir)

    def particles_path(self, root=None):
        return os.path.join(data_root(root), self.folder, self.particles_file)

    def micrographs(self, root=None):
        """Sorted raw micrograph paths."""
        d = self.micrograph_dir(root)
        paths = [p for p in glob.glob(os.path.join(d, "*")) if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
        if not paths:
            raise SystemExit("%s: no micrographs (set TOPAZPU_DATA or --data to the shared data folder)" % d)
        return sorted(paths)

    def particles(self, root=None):
        return read_coordinates(self.particles_path(root))

    def labels_per_micrograph(self, root=None):
        """Mean number of labels per labelled micrograph."""
        c = self.particles(root)
        return len(c) / max(1, len(c.image_names()))

    def expected_per_micrograph(self, root=None):
        """Expected particles per micrograph (the -n given to training): mean labels per labelled
        micrograph, times completeness_factor for incompletely labelled data sets."""
        return self.labels_per_micrograph(root) * self.completeness_factor

    @property
    def radius_pre(self):
        """Particle radius in px of the preprocessed images."""
        return self.radius / self.scale


DATASETS = {
    "apoferritin": DataSet(
        name="apoferritin", folder="empiar10146-apoferritin", diameter=65.0, radius=32.0, scale=4,
        n_train_micrographs=8, n_val_micrographs=4, n_train_labels=200, unlabelled_in_training=True,
        metric="ap+f1", targets={"ap": 0.85, "best_f1": 0.85, "train_seconds_max": 600.0}),
    "bgal": DataSet(
        name="bgal", folder="empiar10017-bgal", diameter=108.0, radius=54.0, scale=8,
        n_train_micrographs=7, n_val_micrographs=3, n_train_labels=500, unlabelled_in_training=True,
        metric="ap", targets={"ap": 0.75}),
    "ribosome": DataSet(
        name="ribosome", folder="empiar10028-ribosome", diameter=50.0, radius=25.0, scale=3,
        n_train_micrographs=3, n_val_micrographs=2, n_train_labels=None, unlabelled_in_training=True,
        metric="recall", targets={"recall_at_threshold": 0.9}, completeness_factor=1.5),
}


@dataclasses.dataclass
class Split:
    dataset: DataSet
    seed: int
    label_seed: int
    root: str
    train_paths: List[str]  # raw micrographs used for training (labelled ones + unlabelled ones)
    val_paths: List[str]  # raw validation micrographs
    train_labels: Coordinates  # raw frame, the chosen labels
    val_targets: Coordinates  # raw frame, all particles of the validation micrographs

    @property
    def train_names(self):
        return [image_name(p) for p in self.train_paths]

    @property
    def val_names(self):
        return [image_name(p) for p in self.val_paths]

    @property
    def expected_per_micrograph(self):
        return self.dataset.expected_per_micrograph(self.root)

    def summary(self):
        d = self.dataset
        return {
            "dataset": d.name, "data": os.path.join(self.root, d.folder), "seed": self.seed,
            "label_seed": self.label_seed, "scale": d.scale, "diameter": d.diameter, "radius": d.radius,
            "radius_pre": d.radius_pre, "labels_per_micrograph": round(d.labels_per_micrograph(self.root), 3),
            "expected_per_micrograph": round(self.expected_per_micrograph, 3),
            "train_micrographs": self.train_names, "val_micrographs": self.val_names,
            "unlabelled_in_training": sorted(set(self.train_names) - set(self.train_labels.image_names())),
            "n_train_labels": len(self.train_labels), "n_val_targets": len(self.val_targets),
            "metric": d.metric, "targets": dict(d.targets),
        }


def make_split(dataset, seed=0, n_labels="default", label_seed=None, root=None):
    """Seeded split of `dataset` (a DataSet or its name).

    seed chooses the micrographs; label_seed (default: seed) the labels. n_labels: "default" =
    the protocol's count, None = all labels of the training micrographs, or a number.
    """
    d = DATASETS[dataset] if isinstance(dataset, str) else dataset
    root = data_root(root)
    label_seed = seed if label_seed is None else label_seed
    if n_labels == "default":
        n_labels = d.n_train_labels
    paths = d.micrographs(root)
    by_name = {image_name(p): p for p in paths}
    particles = d.particles(root)
    groups = particles.by_image()
    unknown = sorted(set(groups) - set(by_name))
    if unknown:
        raise SystemExit("%s: particles on micrographs not in %s: %s"
                         % (d.particles_path(root), d.micrograph_dir(root), ", ".join(unknown[:5])))
    labelled = sorted(groups)
    unlabelled = sorted(set(by_name) - set(labelled))
    need = d.n_train_micrographs + d.n_val_micrographs
    if len(labelled) < need:
        raise SystemExit("%s: %d labelled micrographs, the protocol needs %d" % (d.name, len(labelled), need))
    order = np.random.default_rng([seed, 7919]).permutation(len(labelled))
    train_names = sorted(labelled[i] for i in order[:d.n_train_micrographs])
    val_names = sorted(labelled[i] for i in order[d.n_train_micrographs:need])

    pool = Coordinates.concat([groups[n] for n in train_names])
    if n_labels is not None:
        n_labels = int(n_labels)
        if not 0 < n_labels <= len(pool):
            raise SystemExit("%s: %d labels requested, the %d training micrographs hold %d"
                             % (d.name, n_labels, len(train_names), len(pool)))
        pick = np.random.default_rng([label_seed, 104729]).permutation(len(pool))[:n_labels]
        train_labels = pool.subset(np.sort(pick))
    else:
        train_labels = pool
    val_targets = Coordinates.concat([groups[n] for n in val_names])
    train_all = train_names + (unlabelled if d.unlabelled_in_training else [])
    return Split(d, seed, label_seed, root, [by_name[n] for n in sorted(train_all)],
                 [by_name[n] for n in val_names], train_labels, val_targets)


def write_image_list(paths, path, folder_paths=None):
    """Topaz-style image table (image_name<TAB>path, absolute paths): readable by both tools."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("image_name\tpath\n")
        for p in paths:
            f.write("%s\t%s\n" % (image_name(p), os.path.abspath(p)))
    return path


def write_split(split, folder):
    """Write the split's files into `folder` -> dict of their paths (see the module docstring)."""
    os.makedirs(folder, exist_ok=True)
    scale = split.dataset.scale
    files = {
        "train_images": write_image_list(split.train_paths, os.path.join(folder, "train_images.txt")),
        "val_images": write_image_list(split.val_paths, os.path.join(folder, "val_images.txt")),
        "train_targets": os.path.join(folder, "train_targets.txt"),
        "val_targets": os.path.join(folder, "val_targets.txt"),
        "train_targets_pre": os.path.join(folder, "train_targets.pre.txt"),
        "val_targets_pre": os.path.join(folder, "val_targets.pre.txt"),
        "split": os.path.join(folder, "split.json"),
    }
    write_coordinates(split.train_labels, files["train_targets"], fmt="coord")
    write_coordinates(split.val_targets, files["val_targets"], fmt="coord")
    write_coordinates(split.train_labels.scaled(1.0 / scale), files["train_targets_pre"], fmt="coord")
    write_coordinates(split.val_targets.scaled(1.0 / scale), files["val_targets_pre"], fmt="coord")
    with open(files["split"], "w") as f:
        json.dump(split.summary(), f, indent=1)
    return files


def parse_list(text, cast=str):
    """'a,b,c' -> [cast(a), cast(b), cast(c)]."""
    return [cast(t.strip()) for t in str(text).split(",") if t.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("datasets", nargs="*", default=list(DATASETS), help="data sets (default: all)")
    p.add_argument("--data", help="shared data folder (default: $TOPAZPU_DATA or %s)" % DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--labels", type=int, help="number of training labels (default: the protocol's)")
    p.add_argument("-o", "--output", required=True, help="work folder; one subfolder per data set")
    args = p.parse_args()
    for name in args.datasets:
        if name not in DATASETS:
            raise SystemExit("unknown data set %r (choose from %s)" % (name, ", ".join(DATASETS)))
        split = make_split(name, args.seed, n_labels=args.labels if args.labels else "default", root=args.data)
        files = write_split(split, os.path.join(args.output, name))
        s = split.summary()
        print("%s: train %d micrographs (%d labels; unlabelled: %s), validate %d (%d targets), scale %d, "
              "radius %g raw px, expected %.1f per micrograph -> %s"
              % (name, len(s["train_micrographs"]), s["n_train_labels"], ", ".join(s["unlabelled_in_training"])
                 or "none", len(s["val_micrographs"]), s["n_val_targets"], s["scale"], s["radius"],
                 s["expected_per_micrograph"], os.path.dirname(files["split"])))


if __name__ == "__main__":
    main()
