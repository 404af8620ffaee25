"""The decoder family: a causal LM fine-tuned on classification prompts, its answer read back as labels.

Files, in the order one example flows through them: ``features.py`` (splits -> features -> padded batches, with
the prompts of :mod:`lit_clf.prompting`), ``packing.py`` (shared-prefix packing), ``loss.py`` (the answer
cross-entropy), ``module.py`` (loss and steps; the model from :mod:`lit_clf.loading`), ``decoding/`` (free,
constrained, score), ``kv_cache.py``, ``answer_log.py`` (answers kept across an interrupted evaluation).
"""

from lit_clf.decoder.module import DecoderGenerativeModule

__all__ = ["DecoderGenerativeModule"]
