"""The data set bundled with the package: 4 real apoferritin micrographs with particle centres."""
import glob
import os

BUNDLED_DIR = os.path.join(os.path.dirname(__file__), "data", "empiar10146-apoferritin-bin2-small")
# Particle diameter in pixels of the bundled micrographs (about 33 px at 2x binning).
BUNDLED_PARTICLE_DIAMETER = 33


def bundled_micrographs():
    """Sorted paths of the bundled micrographs."""
    return sorted(glob.glob(os.path.join(BUNDLED_DIR, "*.mrc")))


def bundled_particles():
    """Path of the bundled particle coordinates (Topaz TSV)."""
    return os.path.join(BUNDLED_DIR, "particles_bin2_topaz.txt")
