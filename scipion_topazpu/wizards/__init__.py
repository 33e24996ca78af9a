"""Wizards of the topazpu protocols.

The computations are pure functions in scipion_topazpu.estimates (re-exported here), tested
without a display; the wizard classes only read the form and set a value.
"""
from ..estimates import (boxSizeFromDiameter, diameterFromBoxSize, expectedParticlesPerMicrograph,
                         particleRadiusPx, thresholdFromCurve)
from .wizard_particle_size import (TopazPuPickBoxSizeWizard, TopazPuPickDiameterWizard,
                                   TopazPuTrainDiameterWizard)
from .wizard_particles_per_micrograph import TopazPuParticlesPerMicrographWizard
from .wizard_threshold import TopazPuThresholdWizard, modelThreshold

__all__ = ['TopazPuPickBoxSizeWizard', 'TopazPuPickDiameterWizard', 'TopazPuTrainDiameterWizard',
           'TopazPuParticlesPerMicrographWizard', 'TopazPuThresholdWizard', 'modelThreshold',
           'boxSizeFromDiameter', 'diameterFromBoxSize', 'expectedParticlesPerMicrograph', 'particleRadiusPx',
           'thresholdFromCurve']
