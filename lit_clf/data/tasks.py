"""Task specifications and the raw example type shared by every dataset and model family."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

#: ``sequence``: one label per example; ``multilabel``: any number of labels per example (a tuple, maybe empty);
#: ``token``: one label per whitespace word.
TaskKind = Literal["sequence", "multilabel", "token"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
#: How a token task's word labels mark spans: ``runs`` (a span is a run of equal labels, outside words ``Other``:
#: MASSIVE's word labels) or ``bio`` (IOB2 tags such as ``B-person``/``I-person``, outside words ``O``: CoNLL).
SpanScheme = Literal["runs", "bio"]

#: Word label for words outside every slot (MASSIVE's convention, the ``runs`` scheme).
OTHER = "Other"
#: Tag of words outside every entity in the ``bio`` scheme.
OUTSIDE_TAG = "O"

#: Label id of positions and examples that do not count (loss and metrics), as in PyTorch's cross-entropy.
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One raw input with its gold labels for every task the dataset offers.

    Attributes:
        id: Unique id within the dataset (``train/rec.autos/102994`` for 20NG, the row id for MASSIVE).
        text: The input text as the dataset distributes it.
        labels: Task name -> gold label: a label string for sequence tasks, a tuple of labels for multi-label
            tasks, a tuple with one label per whitespace word of ``text`` for token tasks.
    """

    id: str
    text: str
    labels: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def words(self) -> list[str]:
        """The whitespace words of ``text``: the units token tasks label."""
        return self.text.split()


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about one task.

    Attributes:
        name: Task name, used in metric keys (``val/{name}_acc``) and prediction files.
        kind: ``sequence`` (one label per example), ``multilabel`` (any number) or ``token`` (one label per word).
        labels: The ordered label list; a label's index is its class id.
        scheme: For token tasks, how word labels mark spans (:data:`SpanScheme`): it sets the outside label and
            how span F1 is scored.
    """

    name: str
    kind: TaskKind
    labels: tuple[str, ...]
    scheme: SpanScheme = "runs"

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        if self.scheme not in ("runs", "bio"):
            raise ValueError(f"task {self.name!r}: scheme must be 'runs' or 'bio', got {self.scheme!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: duplicate labels")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def outside(self) -> str:
        """The word label outside every span: ``Other`` (``runs``) or ``O`` (``bio``)."""
        return OUTSIDE_TAG if self.scheme == "bio" else OTHER

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, safe to store in checkpoints loaded with ``weights_only=True``."""
        return {"name": self.name, "kind": self.kind, "labels": list(self.labels), "scheme": self.scheme}

    @classmethod
    def coerce(cls, spec: TaskSpec | Mapping[str, Any]) -> TaskSpec:
        """Accept a ``TaskSpec`` or its ``to_dict()`` form (as stored in checkpoints)."""
        if isinstance(spec, TaskSpec):
            return spec
        return cls(spec["name"], spec["kind"], tuple(spec["labels"]), spec.get("scheme", "runs"))


def collect_labels(examples: Iterable[Example], task: str, kind: TaskKind, outside: str = OTHER) -> tuple[str, ...]:
    """Sorted label set of ``task`` over ``examples`` (word labels for token tasks, ``outside`` first)."""
    seen: set[str] = set()
    for example in examples:
        value = example.labels[task]
        if kind == "sequence":
            seen.add(value)
        else:
            seen.update(value)
    if kind == "token":
        seen.discard(outside)
        return (outside, *sorted(seen))
    return tuple(sorted(seen))


def select_tasks(requested: Sequence[str], available: Mapping[str, TaskKind], option: str = "tasks") -> list[str]:
    """Validate task names against a dataset's tasks; one clear error for an unknown or empty list."""
    if not requested:
        raise ValueError(f"{option}: give at least one task (available: {', '.join(available)})")
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ValueError(f"{option}: unknown task {unknown[0]!r}; available: {', '.join(available)}")
    if len(set(requested)) != len(requested):
        raise ValueError(f"{option}: task listed twice in {list(requested)}")
    return list(requested)
