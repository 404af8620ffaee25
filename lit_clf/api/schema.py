"""Structured output for API models: a JSON schema that only admits valid answers, the API counterpart of
constrained decoding (OpenAI's ``response_format={"type": "json_schema", ...}``; vLLM and llama.cpp servers take the
same field).

Only a ``json`` answer (one object, a field per task) has a schema: a label is a string from the task's labels, a
multi-label or token answer an array of them (a token answer holds exactly one label per word); an ``inline`` token
answer (:mod:`lit_clf.prompting.inline`) is a string, which a schema cannot check further.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lit_clf.data.tasks import TaskSpec

__all__ = ["answer_schema", "response_format"]


def answer_schema(
    tasks: Sequence[TaskSpec], keys: Sequence[str], num_words: int | None = None, token_format: str = "labels"
) -> dict[str, Any]:
    """The JSON schema of the answer object for ``tasks`` under ``keys``; ``num_words`` sizes token answers."""
    properties = {}
    for task, key in zip(tasks, keys):
        label = {"type": "string", "enum": list(task.labels)}
        if task.kind == "sequence":
            properties[key] = label
        elif task.kind == "multilabel":
            properties[key] = {"type": "array", "items": label}
        elif token_format == "inline":
            properties[key] = {"type": "string"}
        else:
            count = {} if num_words is None else {"minItems": num_words, "maxItems": num_words}
            properties[key] = {"type": "array", "items": label, **count}
    return {"type": "object", "properties": properties, "required": list(keys), "additionalProperties": False}


def response_format(
    tasks: Sequence[TaskSpec], keys: Sequence[str], num_words: int | None = None, token_format: str = "labels"
) -> dict[str, Any]:
    """The ``response_format`` request parameter that restricts the answer to :func:`answer_schema`."""
    schema = answer_schema(tasks, keys, num_words, token_format)
    return {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}
