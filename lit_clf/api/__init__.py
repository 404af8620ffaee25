"""Chat models behind an OpenAI-compatible API, evaluated with the decoder module's prompts and parsers."""

from lit_clf.api.module import ChatApiModule

__all__ = ["ChatApiModule"]
