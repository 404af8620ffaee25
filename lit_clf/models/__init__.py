"""Model families: the encoder with sequence/token heads and the generative decoder."""

from lit_clf.models.decoder import DecoderGenerativeModule
from lit_clf.models.encoder import EncoderSeqTokenModule

__all__ = ["DecoderGenerativeModule", "EncoderSeqTokenModule"]
