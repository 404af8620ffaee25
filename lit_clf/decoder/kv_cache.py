"""The KV cache's name in transformers' model calls and outputs: ``past_key_values`` up to transformers 5.22,
``cache`` from 5.24 (where the old name still works, with a deprecation warning, until 6.0). The range this project
supports (``transformers>=5.17,<6``) spans both, so every call that hands over or reads a cache goes through here."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from transformers.modeling_outputs import CausalLMOutputWithPast

CACHE_ARG = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for a model call or ``generate``, under this transformers version's name."""
    return {CACHE_ARG: cache}


def output_cache(output: Any) -> Any:
    """The KV cache a model call returned (``use_cache=True``)."""
    return getattr(output, CACHE_ARG)
