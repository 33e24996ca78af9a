"""Scipion objects of the plugin: the trained picking model."""
import math
import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject


class TopazPuModel(EMObject):
    """A trained topazpu picking model: the model file (.pt) and its metadata.

    The metadata fields are copied from the model file when the object is created, so
    Scipion can show them without reading the file; `getMetadata()` reads the full
    record (including the validation precision-recall curve) from the file itself.
    """

    def __init__(self, path=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._path = pwobj.String(path)
        self._architecture = pwobj.String()
        self._method = pwobj.String()
        self._pi = pwobj.Float()
        self._labelRadius = pwobj.Float()      # px of the (downsampled) training images
        self._particleRadius = pwobj.Float()   # px of the (downsampled) training images
        self._scale = pwobj.Float()            # downsampling factor applied to raw micrographs
        self._normalization = pwobj.String()
        self._valAp = pwobj.Float()
        self._threshold = pwobj.Float()        # suggested score threshold (logit)
        self._epochsTrained = pwobj.Integer()
        self._pixelSize = pwobj.Float()        # A/px of the images the network saw (0: unknown)

    # ---- path -------------------------------------------------------------------------
    def getPath(self):
        return self._path.get()

    def setPath(self, path):
        self._path.set(path)

    def getFileName(self):
        return self.getPath()

    def getFiles(self):
        path = self.getPath()
        files = {path}
        sidecar = os.path.splitext(path)[0] + '.json'
        if os.path.exists(sidecar):
            files.add(sidecar)
        return files

    # ---- metadata ---------------------------------------------------------------------
    def getMetadata(self):
        """The full metadata dict of the model file (topazpu_core.checkpoint)."""
        from topazpu_core.checkpoint import read_model_metadata
        return read_model_metadata(self.getPath())

    def setFromMetadata(self, meta):
        """Copy the summary fields of a metadata dict onto the Scipion attributes."""
        def num(key):
            value = meta.get(key)
            if value is None:
                return None
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None

        self._architecture.set(meta.get('architecture'))
        self._method.set(meta.get('objective_trained') or meta.get('method'))  # PN when every particle is labelled
        self._pi.set(num('pi'))
        self._labelRadius.set(num('label_radius'))
        self._particleRadius.set(num('particle_radius'))
        self._scale.set(num('scale') or 1.0)
        self._normalization.set(meta.get('normalization'))
        self._valAp.set(num('val_ap'))
        self._threshold.set(num('threshold'))
        epochs = meta.get('epochs_trained')
        self._epochsTrained.set(int(epochs) if epochs is not None else None)

    def getArchitecture(self):
        return self._architecture.get()

    def getMethod(self):
        return self._method.get()

    def getPi(self):
        return self._pi.get()

    def getLabelRadius(self):
        return self._labelRadius.get()

    def getParticleRadius(self):
        """Particle radius in px of the downsampled training images (None: unknown)."""
        return self._particleRadius.get()

    def getParticleRadiusPx(self, frame):
        """Particle radius in px of the "raw" micrographs the picker reads or of the
        "preprocessed" training images (None: unknown); converted by the engine's rule."""
        from topazpu_core.options import model_length_px
        return model_length_px({'particle_radius': self.getParticleRadius(), 'scale': self.getScale()},
                               'particle_radius', frame)

    def getScale(self):
        return self._scale.get() or 1.0

    def getNormalization(self):
        return self._normalization.get()

    def getValAp(self):
        return self._valAp.get()

    def getThreshold(self):
        """Suggested score threshold (logit) chosen on validation data (None: unknown)."""
        return self._threshold.get()

    def getEpochsTrained(self):
        return self._epochsTrained.get()

    def getPixelSize(self):
        """Pixel size (A/px) of the downsampled images the network was trained on, or None."""
        value = self._pixelSize.get()
        return value if value else None

    def setPixelSize(self, value):
        self._pixelSize.set(value)

    def getRawPixelSize(self):
        """Pixel size (A/px) the model expects of the micrographs given to the picker."""
        px = self.getPixelSize()
        return px / self.getScale() if px else None

    def getParticleDiameterA(self):
        """Particle diameter in Angstrom recorded in the model, or None."""
        radius, px = self.getParticleRadius(), self.getPixelSize()
        return 2.0 * radius * px if radius and px else None

    def describe(self):
        """One line for summaries."""
        parts = ['%s' % (self.getArchitecture() or '?'), 'objective %s' % (self.getMethod() or '?'),
                 'scale %g' % self.getScale()]
        if self.getEpochsTrained() is not None:
            parts.append('%d epochs' % self.getEpochsTrained())
        if self.getValAp() is not None:
            parts.append('validation AP %.3f' % self.getValAp())
        if self.getThreshold() is not None:
            parts.append('suggested threshold %.2f' % self.getThreshold())
        return ', '.join(parts)

    def __str__(self):
        return '%s (%s)' % (self.getClassName(), self.describe())
