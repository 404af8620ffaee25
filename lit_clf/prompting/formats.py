"""Prompt formats: how a filled template and its answer become one text (``raw``, ``llama2``, ``chat``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: ``raw``: system + prompt text, then `` {answer}``. ``llama2``: ``<s>[INST] {prompt} [/INST] {answer} </s>``
#: (Meta's chat format, ``<<SYS>>`` block for a system prompt). ``chat``: the tokenizer's chat template, user
#: turn = prompt, assistant turn = answer.
PromptFormat = Literal["raw", "llama2", "chat"]
PROMPT_FORMATS: tuple[str, ...] = get_args(PromptFormat)


def wrap_prompt(system: str | None, user: str, prompt_format: PromptFormat) -> str:
    """The prompt text of the ``raw`` and ``llama2`` formats (BOS excluded)."""
    if prompt_format == "raw":
        return user if system is None else f"{system}\n{user}"
    # Meta's llama/generation.py: f"{B_INST} {content.strip()} {E_INST}", the system prompt in a <<SYS>> block.
    content = user if system is None else f"<<SYS>>\n{system}\n<</SYS>>\n\n{user}"
    return f"[INST] {content.strip()} [/INST]"


def chat_messages(system: str | None, user: str) -> list[dict[str, str]]:
    """``[{"role": "system", ...},] {"role": "user", ...}``: a prompt as chat messages (the ``chat`` format's input to
    the tokenizer's chat template, and what API models are sent)."""
    return [*([{"role": "system", "content": system}] if system is not None else []), {"role": "user", "content": user}]


def answer_segment(answer: str, prompt_format: PromptFormat) -> str:
    """The answer text as it follows the prompt: after ``Label:`` (raw) or ``[/INST]`` (llama2) a space, and
    Meta's trailing space before ``</s>`` (``[/INST] {answer} </s>``); right after the assistant header (chat)."""
    if prompt_format == "raw":
        return f" {answer}"
    if prompt_format == "llama2":
        return f" {answer.strip()} "
    return answer


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids the tokenizer puts before a text by default (``[<s>]`` for Llama 2, ``[]`` for SmolLM2)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def label_answer_ids(
    tokenizer: PreTrainedTokenizerBase, answers: Sequence[str], prompt_format: PromptFormat = "chat"
) -> list[list[int]]:
    """Ids + EOS of answer texts as the prompt encoder tokenizes them after a prompt of format ``prompt_format``.

    The answer segment is tokenized on its own: `` rec.autos`` (``raw``), `` rec.autos `` (``llama2``) or
    ``rec.autos`` (``chat``). For several tasks, pass :func:`lit_clf.prompting.answers.render_answer` texts.
    """
    eos = tokenizer.eos_token_id
    texts = [answer_segment(answer, prompt_format) for answer in answers]
    return [ids + [eos] for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
