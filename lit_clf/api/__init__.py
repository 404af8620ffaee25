"""Chat models behind an OpenAI-compatible API, evaluated with the prompts and parsers of :mod:`lit_clf.prompting`."""

from lit_clf.api.module import ChatApiModule

__all__ = ["ChatApiModule"]
