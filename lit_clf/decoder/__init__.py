"""The decoder family: a causal LM fine-tuned on classification prompts, its answer read back as labels.

Files, in the order one example flows through them: ``paper_prompts/`` (the paper's Listings 1-12 as template
files), ``templates.py`` (filling a template), ``formats.py`` (raw, llama2, chat), ``encoding.py`` (prompt and
answer ids, the answer-only loss mask), ``features.py`` (splits -> features -> padded batches), ``loading.py``
(the causal LM), ``module.py`` (loss and steps), ``decoding/`` (free, constrained, score), ``answers.py``
(rendering gold answers, parsing generated ones).
"""

from lit_clf.decoder.module import DecoderGenerativeModule

__all__ = ["DecoderGenerativeModule"]
