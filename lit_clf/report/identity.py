"""What a run is, in the words run names, W&B tags and the report's rows share: its dataset, model, tasks, shots and
whether its model is fine-tuned (one rule, :func:`is_fine_tuned`, for all of them)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The model classes whose runs are generative rows (with shots), by every import path a config may name them by:
#: each class's own ``generative`` attribute, written out so the report reads run folders without importing
#: torch (tests/report/test_runs_to_table.py checks the two agree). A class outside lit_clf: generative when the
#: run names shots.
GENERATIVE = {
    "lit_clf.decoder.DecoderGenerativeModule": True,
    "lit_clf.decoder.module.DecoderGenerativeModule": True,
    "lit_clf.api.ChatApiModule": True,
    "lit_clf.api.module.ChatApiModule": True,
    "lit_clf.encoder.EncoderSeqTokenModule": False,
    "lit_clf.encoder.module.EncoderSeqTokenModule": False,
}


def is_generative(class_path: str | None, shots: Any) -> bool:
    """Whether a run's model is a generative family (:data:`GENERATIVE`); for another class, or none named (an
    export that left it out), whether the run names shots."""
    if class_path in GENERATIVE:
        return GENERATIVE[class_path]
    return shots not in (None, "", "null", "None")


def is_fine_tuned(ckpt_path: Any, trained: bool) -> bool:
    """A run's model is fine-tuned when the run trained it (``trained``: a ``fit``; for the report, training
    metrics or steps) or when it was evaluated from a checkpoint (``ckpt_path`` set)."""
    return trained or ckpt_path not in (None, "", "null", "None")


@dataclass(frozen=True)
class RunFacts:
    """What a run is, for W&B names, tags and the results table."""

    dataset: str
    model: str
    tasks: tuple[str, ...]
    shots: int | None
    fine_tuned: bool

    @property
    def consolidated(self) -> bool:
        return len(self.tasks) > 1

    @property
    def name(self) -> str:
        shots = f"-{self.shots}shot" if self.shots is not None else ""
        return f"{self.dataset}-{self.model}-{'+'.join(self.tasks)}{shots}-{'ft' if self.fine_tuned else 'noft'}"

    @property
    def tags(self) -> list[str]:
        tags = [self.dataset, self.model, *self.tasks, "FT" if self.fine_tuned else "no-FT"]
        tags.append("consolidated" if self.consolidated else "dual")
        if self.shots is not None:
            tags.append(f"{self.shots}-shot")
        return tags


def run_facts(config: dict[str, Any], dataset: str, stage: str) -> RunFacts:
    """Facts from a resolved LightningCLI config (one subcommand's) and the stage being run."""
    model_args = config.get("model", {}).get("init_args", {})
    model_id = str(model_args.get("backbone") or "model")
    tasks = tuple(config.get("data", {}).get("init_args", {}).get("tasks") or ())
    fine_tuned = is_fine_tuned(config.get("ckpt_path"), trained=stage == "fit")
    return RunFacts(dataset, Path(model_id.rstrip("/")).name, tasks, model_args.get("shots"), fine_tuned)


def dataset_name(class_path: str | None, name: str | None = None, *, only_lit_clf: bool = False) -> str:
    """A run's dataset as run names, tags and the report spell it: ``name`` (a files DataModule's
    ``data.init_args.name``) when given, else the ``dataset_name`` of the DataModule class (``massive``,
    ``newsgroups``), else, for a class that does not import here (the report reading someone else's runs), its
    class name without ``DataModule``; ``data`` when none of these says anything. ``only_lit_clf``: import no
    module outside lit_clf (the report: a run folder or W&B file must not make it import code; a run's own config
    was checked by :mod:`lit_clf.trust` before it got here)."""
    if name:
        return str(name)
    if not class_path:
        return "data"
    module, _, attr = class_path.rpartition(".")
    if only_lit_clf and module != "lit_clf" and not module.startswith("lit_clf."):
        return attr.removesuffix("DataModule") or "data"
    try:
        found = getattr(getattr(importlib.import_module(module), attr), "dataset_name", "")
    except (ImportError, AttributeError, ValueError):  # ValueError: a bare class name, no module
        found = attr.removesuffix("DataModule")
    return found or "data"
