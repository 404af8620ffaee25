"""Model references: a Hugging Face hub id (``roberta-base``, ``meta-llama/Meta-Llama-3-8B``) or a local folder."""

from __future__ import annotations

from pathlib import Path


def check_model_ref(ref: str, option: str) -> str:
    """``ref`` if it names an existing folder or can be a hub id; a one-line ``ValueError`` naming ``option`` for a
    local path that does not exist (instead of the hub's "Repo id must be in the form ..." for it)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return ref
    if path.exists():
        raise ValueError(f"{option}: {ref} is a file; give the model's folder (with config.json) or a hub id")
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref:
        raise ValueError(
            f"{option}: {ref}: no such folder; give a local model folder (with config.json) or a hub id "
            "('name' or 'namespace/name')"
        )
    return ref
