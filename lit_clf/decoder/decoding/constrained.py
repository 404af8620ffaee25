"""Constrained decoding: greedy generation that can only write a valid answer.

At each generation step (:class:`ConstrainedAnswerProcessor`, :func:`constrained_generate`) only the tokens that
keep the generated text a prefix of a valid answer are allowed, EOS only once the answer is complete. Greedy
decoding then writes a valid answer for every task kind: one label, a slot list with exactly one label per word, or
the multi-task JSON object.

How constrained decoding works:

1. *The answer as a graph of parts.* :meth:`AnswerConstraint.graph` walks the answer's layout
   (:func:`lit_clf.prompting.answers.answer_layout`) and renders each value with
   :func:`lit_clf.prompting.answers.render_value` itself, marker values in place of the labels, splitting the text at
   the markers: literal parts (``{"task1": "``) alternate with label choices, each label written as the renderer
   writes it (JSON escapes included), so the format cannot drift from the one training uses. A multi-label value
   branches: the empty list, or labels in the label list's order, each at most once, joined by the separator.
   An inline token value (:mod:`lit_clf.prompting.inline`) is a graph over the input's words: each word is
   written as it is, or opens a span (``[type : word``), or continues the open one; ``]`` closes it.
2. *The text of each token in context.* :class:`TokenVocab` holds the bytes each token adds to a text it
   continues: the byte-level alphabet of byte-level BPE (``Ġ`` is a space) or, for other tokenizers, the decoded
   text after an anchor token (SentencePiece's ``▁`` is a space inside a text, though a lone token decodes
   without it), ``<0x..>`` byte-fallback pieces being their byte. Special and added tokens are never allowed.
   The answer segment of the prompt format (a leading space in ``raw`` and ``llama2``, Meta's trailing space in
   ``llama2``) is read off the tokenizer's own ids of a probe answer, so it is what training uses.
3. *An automaton over bytes.* The parts become one trie per part; a state is the set of (part, trie node)
   positions the text so far can end at (a finished part continues at the start of each next part), interned to
   an int, with memoized transitions (a lazily built DFA).
4. *Allowed tokens.* From a state, a depth-first walk extends the text byte by byte along the automaton and
   stops as soon as no token of the vocabulary starts with the bytes walked (a binary search in the sorted
   token strings): every token met on the way is allowed. The walk visits the few hundred strings that are
   both answer prefixes and token prefixes, never the whole vocabulary, and its result is cached per state.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lit_clf.data.tasks import Example, TaskSpec
from lit_clf.decoder.decoding.base import Decoded, read_answer
from lit_clf.decoder.kv_cache import cache_kwargs
from lit_clf.prompting.answers import answer_layout, answer_style, render_value
from lit_clf.prompting.formats import PromptFormat, label_answer_ids
from lit_clf.prompting.inline import check_token_format, span_types

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lit_clf.prompting.encoding import PromptEncoder

__all__ = [
    "AnswerConstraint",
    "AnswerGraph",
    "ConstrainedAnswerProcessor",
    "ConstrainedDecoding",
    "TokenVocab",
    "constrained_generate",
]

# Markers written in place of labels when rendering an answer's layout: private-use characters, which JSON keeps
# as they are (``ensure_ascii=False``) and no label contains.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Probe answer whose ids reveal the text a prompt format puts around an answer.
_PROBE = "Zq"
_DONE = -1  # state of a row that has written EOS


# ---------------------------------------------------------------------------------------------------------------------
# Valid answers


@dataclass(frozen=True)
class AnswerGraph:
    """Valid answer texts as a graph of parts.

    Attributes:
        parts: Each part a tuple of alternative texts (one for a literal).
        nexts: Per part, the parts that may follow it; ``len(parts)`` stands for the end of the answer.
        starts: The parts an answer may begin with (``len(parts)``: the empty answer).
    """

    parts: tuple[tuple[str, ...], ...]
    nexts: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]

    def matches(self, text: str) -> bool:
        """Whether ``text`` is a valid answer (for tests and checks; decoding uses the token automaton)."""
        tries = [_Trie([alternative.encode() for alternative in alternatives]) for alternatives in self.parts]
        positions = _closure([(part, 0) for part in self.starts], tries, self.nexts)
        for byte in text.encode():
            moved = [(p, tries[p].children[n][byte]) for p, n in positions if byte in _children(tries, p, n)]
            positions = _closure(moved, tries, self.nexts)
        return (len(self.parts), 0) in positions


def _children(tries: Sequence[_Trie], part: int, node: int) -> dict[int, int]:
    return tries[part].children[node] if part < len(tries) else {}


def _closure(
    positions: Sequence[tuple[int, int]], tries: Sequence[_Trie], nexts: Sequence[Sequence[int]]
) -> frozenset[tuple[int, int]]:
    """``positions`` (part, trie node) plus the start of each next part wherever a part's alternative is complete."""
    closed: set[tuple[int, int]] = set()
    stack = list(positions)
    while stack:
        position = stack.pop()
        if position in closed:
            continue
        closed.add(position)
        part, node = position
        if part < len(tries) and tries[part].terminal[node]:
            stack.extend((following, 0) for following in nexts[part])
    return frozenset(closed)


class _GraphBuilder:
    """Appends parts to an :class:`AnswerGraph`; each new part follows the current frontier (the parts that may
    end the text so far; ``-1`` is the start)."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, ...]] = []
        self.nexts: list[list[int]] = []
        self.starts: list[int] = []
        self.frontier: set[int] = {-1}

    def add(self, alternatives: Sequence[str], after: set[int] | None = None) -> int:
        index = len(self.parts)
        self.parts.append(tuple(alternatives))
        self.nexts.append([])
        for source in self.frontier if after is None else after:
            (self.starts if source < 0 else self.nexts[source]).append(index)
        return index

    def literal(self, text: str) -> None:
        if text:
            self.frontier = {self.add((text,))}

    def chain(self, text: str, choices: Sequence[tuple[str, ...]]) -> None:
        """Literal text with marker ``i`` standing for a choice among ``choices[i]``."""
        for i, piece in enumerate(_SLOT.split(text)):
            if i % 2:
                self.frontier = {self.add(choices[int(piece)])}
            else:
                self.literal(piece)

    def label_set(self, task: TaskSpec, quoted: bool) -> None:
        """A multi-label value: the empty list, or labels in the task's order, each at most once."""
        empty = render_value(task, [], quoted)
        head, tail = render_value(task, [_marker(0)], quoted).split(_marker(0))
        two = render_value(task, [_marker(0), _marker(1)], quoted)
        separator = two[len(head) + len(_marker(0)) : len(two) - len(tail) - len(_marker(1))]
        entry, written = self.frontier, _list_items(task)
        exits = {self.add((empty,), entry)}
        start = self.add((head,), entry) if head else None
        chosen: list[int] = []
        separators: list[int] = []
        for i, label in enumerate(written):
            sources = set(separators) | ({start} if start is not None else entry)
            chosen.append(self.add((label,), sources))
            if i < len(written) - 1:
                separators.append(self.add((separator,), {chosen[-1]}))
        self.frontier = exits | ({self.add((tail,), set(chosen))} if tail else set(chosen))

    def inline(self, task: TaskSpec, words: Sequence[str], quoted: bool) -> None:
        """An inline token value over ``words``: each word written plain, opening a span (``[type : word``) or
        continuing the open one, ``]`` closing it. Spans are tracked per type, so that in the ``runs`` scheme a
        span never directly follows one of its own type: those would be one run of equal labels, which
        :func:`~lit_clf.prompting.inline.render_inline` writes as one span."""
        escape = (lambda text: json.dumps(text, ensure_ascii=False)[1:-1]) if quoted else (lambda text: text)
        merge, kinds = task.scheme != "bio", span_types(task)
        if quoted:
            self.literal('"')
        plain = set(self.frontier)  # parts after which no span is open and none was just closed
        inside: dict[str, set[int]] = {}  # span type -> parts after which a span of that type is open
        for i, word in enumerate(words):
            space, text = " " if i else "", escape(word)
            closed = {kind: self.add(("]",), parts) for kind, parts in inside.items()}
            written = self.add((space + text,), plain | set(closed.values()))
            opened: dict[str, set[int]] = {}
            for kind in kinds:
                sources = plain | {part for other, part in closed.items() if not (merge and other == kind)}
                opened[kind] = {self.add((f"{space}[{escape(kind)} : {text}",), sources)}
                if kind in inside:
                    opened[kind].add(self.add((" " + text,), inside[kind]))
            plain, inside = {written}, opened
        self.frontier = plain | {self.add(("]",), parts) for parts in inside.values()}
        if quoted:
            self.literal('"')

    def graph(self) -> AnswerGraph:
        end = len(self.parts)
        for source in self.frontier:
            (self.starts if source < 0 else self.nexts[source]).append(end)
        return AnswerGraph(tuple(self.parts), tuple(tuple(n) for n in self.nexts), tuple(self.starts))


def _marker(slot: int) -> str:
    return f"{_OPEN}{slot}{_CLOSE}"


def _list_items(task: TaskSpec) -> tuple[str, ...]:
    """Each label of ``task`` as a JSON list writes it between its quotes (JSON escapes included)."""
    for label in task.labels:
        if _OPEN in label or _CLOSE in label:
            raise ValueError(f"task {task.name!r}: label {label!r} holds a private-use character")
    return tuple(json.dumps(label, ensure_ascii=False)[1:-1] for label in task.labels)


@dataclass(frozen=True)
class AnswerConstraint:
    """The valid answers of one example: what :func:`lit_clf.prompting.answers.render_answer` can write for it.

    Attributes:
        tasks: The tasks of the prompt, in answer order (``PromptEncoder.tasks``).
        keys: JSON key per task (``json`` style); None for :func:`lit_clf.prompting.answers.default_keys`.
        num_words: Number of whitespace words of the input: the length of every token task's label list.
            Required when a task is a token task.
        style: The answer style (``serial``, ``json``); None: ``serial`` for one task, ``json`` for several.
        token_format: How token tasks answer (``labels``, ``inline``; :mod:`lit_clf.prompting.inline`).
        words: The input's whitespace words; required by an ``inline`` token task (``num_words`` is their count).
    """

    tasks: tuple[TaskSpec, ...]
    keys: tuple[str, ...] | None = None
    num_words: int | None = None
    style: str | None = None
    token_format: str = "labels"
    words: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "keys", tuple(self.keys) if self.keys else None)
        if not self.tasks:
            raise ValueError("AnswerConstraint: give at least one task")
        object.__setattr__(self, "style", answer_style(self.tasks, self.style))
        check_token_format(self.token_format)
        if self.words is not None:
            object.__setattr__(self, "words", tuple(self.words))
            if self.num_words not in (None, len(self.words)):
                raise ValueError(f"num_words: {self.num_words}, but {len(self.words)} words are given")
            object.__setattr__(self, "num_words", len(self.words))
        token_task = next((task.name for task in self.tasks if task.kind == "token"), None)
        if token_task is not None and self.token_format == "inline" and self.words is None:
            raise ValueError(f"words: the inline answer of token task {token_task!r} needs the input's words")
        if token_task is not None and (self.num_words is None or self.num_words < 0):
            raise ValueError(f"num_words: token task {token_task!r} needs the number of input words")

    @classmethod
    def for_example(cls, encoder: PromptEncoder, example: Example) -> AnswerConstraint:
        """The constraint of ``example`` under ``encoder``'s tasks, JSON keys and answer syntax."""
        return cls.for_words(encoder, example.words)

    @classmethod
    def for_words(cls, encoder: PromptEncoder, words: Sequence[str]) -> AnswerConstraint:
        """The constraint of an input of these whitespace ``words`` under ``encoder``'s tasks and answer syntax."""
        template = encoder.template
        inline = template.token_format == "inline" and any(task.kind == "token" for task in encoder.tasks)
        return cls(
            tuple(encoder.tasks),
            template.keys or None,
            len(words),
            template.style,
            template.token_format,
            tuple(words) if inline else None,  # only an inline answer depends on the words: fewer automata
        )

    def graph(self, before: str = "", after: str = "") -> AnswerGraph:
        """The valid answers as a graph of parts, between the literal texts ``before`` and ``after``.

        Joining one alternative of each part along a path from a start to the end gives exactly a
        ``render_answer`` text, e.g. ``('{"task1": "',), ('alarm_set', 'play_music'), ('", "task2": ["',), ...``.
        """
        return _graph(self, before, after)


@functools.lru_cache(maxsize=1024)
def _graph(constraint: AnswerConstraint, before: str, after: str) -> AnswerGraph:
    quoted = constraint.style == "json"
    builder = _GraphBuilder()
    builder.literal(before)
    for piece in answer_layout(constraint.tasks, constraint.keys, constraint.style):
        if isinstance(piece, str):
            builder.literal(piece)
        elif piece.kind == "sequence":
            builder.frontier = {builder.add(tuple(render_value(piece, label, quoted) for label in piece.labels))}
        elif piece.kind == "multilabel":
            builder.label_set(piece, quoted)
        elif constraint.token_format == "inline":
            builder.inline(piece, constraint.words or (), quoted)
        else:
            count = constraint.num_words or 0
            items = _list_items(piece)
            builder.chain(render_value(piece, [_marker(i) for i in range(count)], quoted), [items] * count)
    builder.literal(after)
    return builder.graph()


# ---------------------------------------------------------------------------------------------------------------------
# Token text


@dataclass(eq=False)
class TokenVocab:
    """The bytes each token adds to a text it continues, for every id of a tokenizer.

    Attributes:
        token_bytes: Id -> bytes; None for tokens never allowed in an answer (special and added tokens, pieces
            that decode to nothing or to part of a character).
        eos_token_id: The id that ends every answer (the tokenizer's EOS, as :class:`PromptEncoder` appends).
    """

    token_bytes: list[bytes | None]
    eos_token_id: int
    _ids: dict[bytes, tuple[int, ...]] = field(init=False, repr=False)
    _sorted: list[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids: dict[bytes, list[int]] = {}
        for token_id, piece in enumerate(self.token_bytes):
            if piece:
                ids.setdefault(piece, []).append(token_id)
        self._ids = {piece: tuple(same) for piece, same in ids.items()}  # tuples: untracked by the GC
        self._sorted = sorted(self._ids)

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> TokenVocab:
        """The vocabulary of ``tokenizer``, built once per tokenizer object (about 0.1-0.5 s)."""
        return _vocab_of(tokenizer)

    def ids_of(self, piece: bytes) -> tuple[int, ...]:
        """The ids whose text is exactly ``piece``."""
        return self._ids.get(piece, ())

    def has_prefix(self, prefix: bytes) -> bool:
        """Whether some token's text starts with ``prefix``."""
        i = bisect.bisect_left(self._sorted, prefix)
        return i < len(self._sorted) and self._sorted[i].startswith(prefix)

    def text_bytes(self, ids: Sequence[int]) -> bytes:
        """The text ``ids`` add after other tokens; special tokens add nothing."""
        return b"".join(self.token_bytes[i] or b"" for i in ids)


@functools.lru_cache(maxsize=8)
def _vocab_of(tokenizer: PreTrainedTokenizerBase) -> TokenVocab:
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer: no eos_token_id; answers need an end-of-sequence token")
    ids = list(range(len(tokenizer)))
    pieces = tokenizer.convert_ids_to_tokens(ids)
    token_bytes = _byte_level_bytes(pieces) if _is_byte_level(tokenizer) else _in_context_bytes(tokenizer, pieces)
    for token_id in set(tokenizer.added_tokens_decoder) | set(tokenizer.all_special_ids):
        if token_id < len(token_bytes):
            token_bytes[token_id] = None
    return TokenVocab(token_bytes, tokenizer.eos_token_id)


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's decoder is (or contains) the byte-level one of GPT-2 style BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False

    def has_byte_level(node: object) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(has_byte_level(v) for v in node.values())
        return isinstance(node, list) and any(has_byte_level(v) for v in node)

    return has_byte_level(json.loads(decoder.__getstate__()))


def _byte_level_bytes(pieces: list[str]) -> list[bytes | None]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = {char: byte for byte, char in bytes_to_unicode().items()}
    out: list[bytes | None] = []
    for piece in pieces:
        raw = [table.get(char) for char in piece]
        out.append(bytes(raw) if raw and None not in raw else None)
    return out


def _in_context_bytes(tokenizer: PreTrainedTokenizerBase, pieces: list[str]) -> list[bytes | None]:
    """Each token's text after an anchor token: SentencePiece drops a text's leading space only at its start."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
    head = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    texts = tokenizer.batch_decode(
        [anchor + [i] for i in range(len(pieces))], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    out: list[bytes | None] = []
    for piece, text in zip(pieces, texts):
        byte = _BYTE_PIECE.fullmatch(piece or "")
        rest = text[len(head) :] if text.startswith(head) else ""
        if byte:
            out.append(bytes([int(byte.group(1), 16)]))
        else:
            out.append(rest.encode("utf-8") if rest and "\ufffd" not in rest else None)
    return out


@functools.lru_cache(maxsize=16)
def _answer_affixes(tokenizer: PreTrainedTokenizerBase, prompt_format: PromptFormat) -> tuple[bytes, bytes]:
    """The text a prompt format puts before and after an answer, as the answer's ids write it after the prompt."""
    ids = label_answer_ids(tokenizer, [_PROBE], prompt_format)[0][:-1]
    text = TokenVocab.of(tokenizer).text_bytes(ids)
    before, found, after = text.partition(_PROBE.encode())
    if not found or _PROBE.encode() in after:
        raise ValueError(
            f"prompt_format={prompt_format!r}: the answer ids of {_PROBE!r} write {text!r}, "
            "which does not contain it once"
        )
    return before, after


# ---------------------------------------------------------------------------------------------------------------------
# Automaton


class _Trie:
    """The alternatives of one part as a byte trie: node 0 is the root."""

    def __init__(self, alternatives: Sequence[bytes]) -> None:
        self.children: list[dict[int, int]] = [{}]
        self.terminal = [False]
        for text in alternatives:
            node = 0
            for byte in text:
                if byte not in self.children[node]:
                    self.children[node][byte] = len(self.children)
                    self.children.append({})
                    self.terminal.append(False)
                node = self.children[node][byte]
            self.terminal[node] = True
        self.max_len = max((len(text) for text in alternatives), default=0)


class _AnswerAutomaton:
    """Prefixes of valid answers over one vocabulary: a byte DFA built lazily from an :class:`AnswerGraph`.

    A state is the set of ``(part, node)`` positions the text so far can end at, interned to an int;
    ``(len(parts), 0)`` means the answer is complete.
    """

    def __init__(self, graph: AnswerGraph, vocab: TokenVocab) -> None:
        self.vocab = vocab
        self._tries = [_Trie([text.encode("utf-8") for text in alternatives]) for alternatives in graph.parts]
        self._nexts = graph.nexts
        self._final = (len(self._tries), 0)
        self._sets: list[frozenset[tuple[int, int]]] = []
        self._index: dict[frozenset[tuple[int, int]], int] = {}
        self._steps: dict[tuple[int, int], int] = {}
        self._tokens: dict[tuple[int, int], int] = {}
        self._allowed: dict[int, torch.Tensor] = {}
        self.dead = self._intern(frozenset())
        self.start = self._intern(_closure([(part, 0) for part in graph.starts], self._tries, self._nexts))
        #: Most tokens an answer can take, EOS included: every other token writes at least one byte, and a path
        #: through the graph visits each part at most once.
        self.max_tokens = sum(trie.max_len for trie in self._tries) + 1

    def consume(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; EOS (or any token after it) gives ``_DONE``."""
        if state == _DONE or token_id == self.vocab.eos_token_id:
            return _DONE
        key = (state, token_id)
        if key not in self._tokens:
            piece = self.vocab.token_bytes[token_id] if token_id < len(self.vocab.token_bytes) else None
            nxt = self.dead if not piece else state
            for byte in piece or b"":
                nxt = self._step(nxt, byte)
            self._tokens[key] = nxt
        return self._tokens[key]

    def allowed(self, state: int) -> torch.Tensor:
        """Ids that keep the text a valid-answer prefix, EOS if complete; EOS alone at a dead end."""
        if state not in self._allowed:
            ids = self._walk(state) or [self.vocab.eos_token_id]
            self._allowed[state] = torch.tensor(ids, dtype=torch.long)
        return self._allowed[state]

    def accepts(self, state: int) -> bool:
        """Whether the text so far is a complete answer."""
        return self._final in self._sets[state]

    def _walk(self, state: int) -> list[int]:
        """Depth-first over the bytes the automaton allows, pruned where no token starts with the bytes walked."""
        found = [self.vocab.eos_token_id] if self.accepts(state) else []
        stack = [(state, b"")]
        while stack:
            at, text = stack.pop()
            for byte in self._next_bytes(at):
                longer = text + bytes((byte,))
                if self.vocab.has_prefix(longer):
                    found.extend(self.vocab.ids_of(longer))
                    stack.append((self._step(at, byte), longer))
        return found

    def _next_bytes(self, state: int) -> set[int]:
        return {byte for part, node in self._sets[state] for byte in _children(self._tries, part, node)}

    def _step(self, state: int, byte: int) -> int:
        key = (state, byte)
        if key not in self._steps:
            moved = [
                (part, self._tries[part].children[node][byte])
                for part, node in self._sets[state]
                if byte in _children(self._tries, part, node)
            ]
            self._steps[key] = self._intern(_closure(moved, self._tries, self._nexts))
        return self._steps[key]

    def _intern(self, positions: frozenset[tuple[int, int]]) -> int:
        if positions not in self._index:
            self._index[positions] = len(self._sets)
            self._sets.append(positions)
        return self._index[positions]


@functools.lru_cache(maxsize=512)
def _automaton(
    constraint: AnswerConstraint, tokenizer: PreTrainedTokenizerBase, prompt_format: PromptFormat
) -> _AnswerAutomaton:
    """One automaton (and its caches) per constraint, tokenizer and format, shared by all batches."""
    before, after = _answer_affixes(tokenizer, prompt_format)
    graph = constraint.graph(before.decode("utf-8"), after.decode("utf-8"))
    return _AnswerAutomaton(graph, TokenVocab.of(tokenizer))


# ---------------------------------------------------------------------------------------------------------------------
# Constrained decoding


class ConstrainedAnswerProcessor(LogitsProcessor):
    """Masks every token that would make a row's generation an invalid answer (``-inf`` logits).

    Tracks each row's automaton state from the ids generated after ``prompt_length``; when the generated ids are
    not a continuation of those seen at the previous call (a new ``generate`` call, beam reordering), the states
    are recomputed from the prompt. Rows that wrote EOS are left unmasked (``generate`` pads them).

    Args:
        tokenizer: The decoder's tokenizer.
        constraints: One constraint per example. With ``num_return_sequences=k`` (rows repeated ``k`` times), row
            ``i`` follows ``constraints[i // k]``.
        prompt_length: Length of the (left-padded) prompt ids given to ``generate``.
        prompt_format: Prompt format of the prompts (``PromptEncoder.prompt_format``): the text around the answer.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        constraints: Sequence[AnswerConstraint],
        prompt_length: int,
        prompt_format: PromptFormat = "chat",
    ) -> None:
        if not constraints:
            raise ValueError("constraints: give one AnswerConstraint per example")
        self.automata = [_automaton(constraint, tokenizer, prompt_format) for constraint in constraints]
        self.prompt_length = prompt_length
        self._seen: torch.Tensor | None = None
        self._states: list[int] = []

    @property
    def max_new_tokens(self) -> int:
        """Enough new tokens for any valid answer of any row (EOS included)."""
        return max(automaton.max_tokens for automaton in self.automata)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = self._row_automata(input_ids.shape[0])
        self._advance(input_ids[:, self.prompt_length :], rows)
        return self._mask(scores, rows)

    def _row_automata(self, batch: int) -> list[_AnswerAutomaton]:
        if batch % len(self.automata):
            raise ValueError(f"batch of {batch} rows for {len(self.automata)} constraints: expected a multiple")
        repeat = batch // len(self.automata)
        return [automaton for automaton in self.automata for _ in range(repeat)]

    def _advance(self, generated: torch.Tensor, rows: list[_AnswerAutomaton]) -> None:
        """Feed each row's new ids to its automaton (all ids again when the rows are not those seen before)."""
        seen = self._seen
        done = 0 if seen is None else seen.shape[1]
        continued = seen is not None and seen.shape[0] == generated.shape[0] and generated.shape[1] >= done
        if not (continued and torch.equal(generated[:, :done], seen)):
            self._states = [automaton.start for automaton in rows]
            done = 0
        for row, new_ids in enumerate(generated[:, done:].tolist()):
            for token_id in new_ids:
                self._states[row] = rows[row].consume(self._states[row], token_id)
        self._seen = generated.clone()

    def _mask(self, scores: torch.Tensor, rows: list[_AnswerAutomaton]) -> torch.Tensor:
        keep = torch.zeros_like(scores, dtype=torch.bool)
        row_ids, col_ids = [], []
        for row, (automaton, state) in enumerate(zip(rows, self._states)):
            if state == _DONE:
                keep[row] = True
                continue
            allowed = automaton.allowed(state)
            col_ids.append(allowed)
            row_ids.append(torch.full_like(allowed, row))
        if col_ids:
            keep[torch.cat(row_ids).to(scores.device), torch.cat(col_ids).to(scores.device)] = True
        return scores.masked_fill(~keep, float("-inf"))


@torch.no_grad()
def constrained_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    constraints: Sequence[AnswerConstraint],
    prompt_format: PromptFormat = "chat",
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> list[str]:
    """Greedy generation of one valid answer per prompt.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer.
        input_ids: ``(B, T)`` left-padded prompt ids (``pad_batch(..., side="left")``).
        attention_mask: ``(B, T)``, 0 on padding.
        constraints: One per prompt (:meth:`AnswerConstraint.for_example`).
        prompt_format: Prompt format of the prompts.
        max_new_tokens: Bound on new tokens; default: enough for the longest valid answer, so that every answer
            is complete. A smaller bound can cut an answer, which then does not parse.
        **generate_kwargs: More ``generate`` arguments, or overrides of the defaults (``do_sample=False``, the
            tokenizer's EOS as ``eos_token_id``, its pad token or else EOS as ``pad_token_id``).

    Returns:
        The decoded generations (special tokens removed), one per prompt, for
        :func:`lit_clf.prompting.answers.parse_answer`.
    """
    processor = ConstrainedAnswerProcessor(tokenizer, constraints, input_ids.shape[1], prompt_format)
    eos = tokenizer.eos_token_id
    settings = {
        "do_sample": False,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        **generate_kwargs,
    }
    output = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_processor=LogitsProcessorList([processor]),
        max_new_tokens=max_new_tokens or processor.max_new_tokens,
        **settings,
    )
    new = output[:, input_ids.shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class ConstrainedDecoding:
    """Greedy generation allowed only valid answers (no invalid output), then parsed like free decoding.

    Args:
        encoder: The prompt encoder (tasks in answer order, JSON keys, prompt format, tokenizer).
        max_new_tokens: Bound on new tokens; unset: the longest valid answer, so no answer is ever cut.
    """

    def __init__(self, encoder: PromptEncoder, max_new_tokens: int | None = None) -> None:
        self.encoder = encoder
        self.max_new_tokens = max_new_tokens

    @classmethod
    def check(cls, tasks: Sequence[TaskSpec]) -> None:
        """Every task kind has a constraint (labels, word labels, label sets)."""

    def __call__(self, model, batch: dict, synced_gpus: bool = False, past_key_values=None) -> list[Decoded]:
        constraints = [AnswerConstraint.for_words(self.encoder, words) for words in batch["words"]]
        texts = constrained_generate(
            model,
            self.encoder.tokenizer,
            batch["input_ids"],
            batch["attention_mask"],
            constraints,
            prompt_format=self.encoder.prompt_format,
            max_new_tokens=self.max_new_tokens,
            synced_gpus=synced_gpus,
            **cache_kwargs(past_key_values),
        )
        return [read_answer(self.encoder, text, n) for text, n in zip(texts, batch["num_words"])]
