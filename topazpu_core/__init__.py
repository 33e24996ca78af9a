"""topazpu_core: positive-unlabeled particle picking for cryo-EM micrographs.

A standalone engine (no Scipion import): micrograph I/O and preprocessing, CNN
classifiers, PU objectives, training, dense scoring with non-maximum suppression,
evaluation and coordinate formats. The `topazpu` command line is a thin layer over it.
"""
__version__ = "0.1.0"
