"""CNN classifiers for particle picking: the architecture registry, the classifier and the decoder."""
from topazpu_core.models.classifier import Classifier, score_map
from topazpu_core.models.decoder import Decoder
from topazpu_core.models.features import ARCHITECTURES

__all__ = ["ARCHITECTURES", "Classifier", "Decoder", "score_map"]
