"""What software a run ran with: Python, the libraries that compute its numbers and this project's source revision
(:class:`RunSoftware`), so that two runs of one config that disagree can be told apart by more than their date."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

import lit_clf

#: The distributions whose versions are recorded, where installed: the ones that compute or score the numbers.
PACKAGES: tuple[str, ...] = ("torch", "transformers", "lightning", "tokenizers", "peft", "bitsandbytes", "seqeval")


def source_revision(root: Path | None = None) -> str | None:
    """The git commit of the lit_clf checkout the code runs from, with ``+dirty`` when tracked files differ from
    it; None for an installed copy (no git checkout) or when git cannot tell."""
    root = root or Path(lit_clf.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if changed else "") if commit else None


def _git(root: Path, *args: str) -> str:
    """``git -C root ARGS``'s output, stripped; raises on failure or after 10 s."""
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def software() -> dict[str, str]:
    """``software/<name>``: the Python version, each installed package of :data:`PACKAGES`, ``lit_clf``'s version
    and, in a git checkout, its ``lit_clf_revision`` (:func:`source_revision`)."""
    found = {"python": platform.python_version(), "lit_clf": lit_clf.__version__}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    revision = source_revision()
    if revision:
        found["lit_clf_revision"] = revision
    return {f"software/{name}": version for name, version in found.items()}


class RunSoftware(Callback):
    """Logs the versions of Python, torch, transformers, lightning and the other libraries that compute the numbers,
    lit_clf's version and, run from a git checkout, its commit (``software/...`` hyperparameters: ``hparams.yaml``
    of a CSV log, the run config in W&B), beside ``cost/device``."""

    def __init__(self, enabled: bool = True) -> None:
        """
        Args:
            enabled: Log the software versions.
        """
        self.enabled = enabled

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        versions = software()
        for logger in trainer.loggers:
            logger.log_hyperparams(versions)


__all__ = ["PACKAGES", "RunSoftware", "software", "source_revision"]
