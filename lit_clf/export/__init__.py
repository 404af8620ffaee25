"""``lit-clf export``: any lit_clf checkpoint as a plain Hugging Face folder (:mod:`lit_clf.export.cli`)."""

from lit_clf.export.manifest import MANIFEST, load_exported, read_manifest

__all__ = ["MANIFEST", "load_exported", "read_manifest"]
