"""lit_clf: single- and multi-task text classification with encoders and decoder LLMs."""

__version__ = "0.1.0"
