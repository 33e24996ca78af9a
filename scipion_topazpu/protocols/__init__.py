"""The topazpu protocols, imported explicitly (an import error here hides the whole plugin)."""
from .protocol_import_coordinates import TopazPuProtImportCoordinates
from .protocol_import_model import TopazPuProtImportModel
from .protocol_normalize import TopazPuProtNormalize
from .protocol_pick import TopazPuProtPick
from .protocol_train import TopazPuProtTrain

__all__ = ['TopazPuProtImportCoordinates', 'TopazPuProtImportModel', 'TopazPuProtNormalize',
           'TopazPuProtPick', 'TopazPuProtTrain']
