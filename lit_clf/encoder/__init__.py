"""The encoder family: a shared encoder (RoBERTa in the paper) with a sequence or token head per task."""

from lit_clf.encoder.module import EncoderSeqTokenModule

__all__ = ["EncoderSeqTokenModule"]
