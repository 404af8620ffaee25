"""Files written by one process of several (DDP, FSDP)."""

from __future__ import annotations

from pathlib import Path


def rank_path(path: Path, rank: int, world_size: int) -> Path:
    """The file one process of several writes instead of ``path``: ``<name>.rank<N><suffix>`` (predictions, answer
    logs); ``path`` itself for one process."""
    return path if world_size == 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
