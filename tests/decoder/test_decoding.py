"""Constrained decoding and label scoring on tiny random Llama models with the real tokenizers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaForCausalLM

from lit_clf.data.collate import pad_batch
from lit_clf.data.tasks import OTHER, Example, TaskSpec
from lit_clf.decoder.decoding.constrained import (
    AnswerConstraint,
    ConstrainedAnswerProcessor,
    TokenVocab,
    constrained_generate,
)
from lit_clf.decoder.decoding.score import (
    CandidateTree,
    candidate_answer_ids,
    label_candidates,
    score_labels,
)
from lit_clf.prompting.answers import parse_answer, render_answer
from lit_clf.prompting.encoding import PromptEncoder
from lit_clf.prompting.formats import label_answer_ids
from lit_clf.prompting.generic_prompts import generic_template
from lit_clf.prompting.templates import get_template

SMOL, LLAMA2, LLAMA3 = "smollm2-135m-instruct-tokenizer", "llama2-tokenizer", "llama3-tokenizer"
# "play" / "play_music" and "rec" / "rec.autos": a label that is a prefix of another.
INTENT = TaskSpec("intent", "sequence", ("alarm_set", "play", "play_music", "weather_query", "calendar_query"))
SLOTS = TaskSpec("slots", "token", (OTHER, "date", "place_name", "song_name", "time", "time_zone"))
TOPIC7 = TaskSpec("topic7", "sequence", ("comp", "rec", "sci"))
TOPIC20 = TaskSpec("topic20", "sequence", ("comp.graphics", "rec", "rec.autos", "sci.space"))
UTTERANCES = [
    ("wake me up at five am this week", "alarm_set", "Other Other Other Other time time date date"),
    ("play yellow submarine", "play_music", "Other song_name song_name"),
    ("what is the weather in paris today", "weather_query", "Other Other Other Other Other place_name date"),
    ("play", "play", "Other"),
    ("what is on my calendar tomorrow at noon", "calendar_query", "Other Other Other Other Other date Other time"),
]
# (prompt format, tokenizer): byte-level BPE with and without a leading space, SentencePiece with both affixes.
FORMATS = [("chat", SMOL), ("raw", SMOL), ("llama2", LLAMA2)]


def utterances() -> list[Example]:
    return [
        Example(str(i), text, {"intent": intent, "slots": tuple(slots.split())})
        for i, (text, intent, slots) in enumerate(UTTERANCES)
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add spin-waiting, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tokenizers, tiny_llama_config):
    cache = {}

    def load(name: str) -> LlamaForCausalLM:
        if name not in cache:
            tokenizer = tokenizers(name)
            torch.manual_seed(0)
            config = tiny_llama_config(tokenizer)
            cache[name] = LlamaForCausalLM(config).eval()
        return cache[name]

    return load


def left_padded(encoder: PromptEncoder, examples: list[Example], max_new_tokens: int = 200) -> dict[str, torch.Tensor]:
    features = [encoder.encode_for_generation(example, max_new_tokens) for example in examples]
    return pad_batch(features, pad_id=encoder.tokenizer.eos_token_id, side="left")


# ---------------------------------------------------------------------------------------------------------------------
# Valid answers and token text


@pytest.mark.parametrize(
    ("tasks", "keys"),
    [((INTENT,), None), ((SLOTS,), None), ((INTENT, SLOTS), None), ((SLOTS, INTENT), ("Slots", "Intent"))],
)
def test_graph_describes_exactly_the_rendered_answers(tasks, keys):
    rng = random.Random(0)
    for style in (None, "serial", "json"):
        graph = AnswerConstraint(tasks, keys if style != "serial" else None, num_words=3, style=style).graph()
        for _ in range(20):
            labels = {task.name: rng.choice(task.labels) for task in tasks if task.kind == "sequence"}
            labels |= {task.name: tuple(rng.choices(task.labels, k=3)) for task in tasks if task.kind == "token"}
            answer = render_answer(Example("x", "a b c", labels), tasks, keys if style != "serial" else None, style)
            assert graph.matches(answer), answer
            assert not graph.matches(answer[:-1]) and not graph.matches(answer + " ")
        if SLOTS in tasks:
            gold = {"intent": "play", "slots": (OTHER, OTHER)}
            wrong_count = render_answer(Example("x", "a b", gold), tasks, keys if style != "serial" else None, style)
            assert not graph.matches(wrong_count)


def test_graph_escapes_labels_as_json_does():
    odd = TaskSpec("odd", "token", (OTHER, 'say "hi"', "back\\slash", "café"))
    labels = {"intent": "play", "odd": ('say "hi"', "back\\slash", "café")}
    answer = render_answer(Example("x", "a b c", labels), (INTENT, odd))
    assert AnswerConstraint((INTENT, odd), num_words=3).graph().matches(answer)
    graph = AnswerConstraint((SLOTS,), num_words=0).graph()
    assert graph.parts == (("[]",),) and graph.matches("[]")


def test_label_set_graph_takes_each_label_once_in_order():
    emotions = TaskSpec("emotion", "multilabel", ("anger", "joy", "sad", 'say "hi"'))
    for style in ("serial", "json"):
        graph = AnswerConstraint((emotions, INTENT), style=style).graph()
        for chosen in [(), ("joy",), ("anger", "sad"), ("anger", "joy", "sad", 'say "hi"'), ('say "hi"', "anger")]:
            answer = render_answer(
                Example("x", "t", {"emotion": chosen, "intent": "play"}), (emotions, INTENT), None, style
            )
            assert graph.matches(answer), answer
        bad = ['["sad", "anger"]', '["joy", "joy"]', '["joy",]', '["fear"]', '[""]']
        for value in bad:
            answer = f'{{"task1": {value}, "task2": "play"}}' if style == "json" else f"emotion: {value}\nintent: play"
            assert not graph.matches(answer), answer


def test_constraint_needs_num_words_for_token_tasks():
    with pytest.raises(ValueError, match="num_words"):
        AnswerConstraint((INTENT, SLOTS))


@pytest.mark.parametrize("name", [SMOL, LLAMA2, LLAMA3])
def test_token_vocab_writes_texts_as_they_follow_a_prompt(tokenizers, name):
    tokenizer = tokenizers(name)
    vocab = TokenVocab.of(tokenizer)
    for text in [" rec.autos", ' {"task1": ["Other", "time"]}', " café naïve — ☕ 東京\n  x"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert vocab.text_bytes(ids) == text.encode("utf-8")
    assert all(vocab.token_bytes[i] is None for i in tokenizer.all_special_ids)


@pytest.mark.parametrize(
    ("prompt_format", "name", "segment"),
    [
        ("chat", SMOL, "rec.autos"),
        ("chat", LLAMA3, "rec.autos"),
        ("raw", SMOL, " rec.autos"),
        ("raw", LLAMA2, " rec.autos"),
        ("llama2", LLAMA2, " rec.autos "),  # Meta's "[/INST] {answer} </s>"
    ],
)
def test_label_answer_ids_write_the_formats_answer_segment(tokenizers, prompt_format, name, segment):
    tokenizer = tokenizers(name)
    ids = label_answer_ids(tokenizer, ["rec.autos"], prompt_format)[0]
    assert ids[-1] == tokenizer.eos_token_id
    assert TokenVocab.of(tokenizer).text_bytes(ids[:-1]) == segment.encode()


# ---------------------------------------------------------------------------------------------------------------------
# Constrained decoding


def all_answers(constraint: AnswerConstraint) -> list[str]:
    """Every valid answer text, by brute force over the label combinations."""
    choices = []
    for task in constraint.tasks:
        if task.kind == "sequence":
            choices.append([(task.name, label) for label in task.labels])
        elif task.kind == "multilabel":
            subsets = itertools.chain.from_iterable(itertools.combinations(task.labels, k) for k in range(4))
            choices.append([(task.name, subset) for subset in subsets])
        else:
            words = itertools.product(task.labels, repeat=constraint.num_words)
            choices.append([(task.name, tuple(labels)) for labels in words])
    text = " ".join(constraint.words or ["w"] * (constraint.num_words or 0))
    combos = itertools.product(*choices)
    tasks, keys, style, token_format = constraint.tasks, constraint.keys, constraint.style, constraint.token_format
    return sorted(
        {render_answer(Example("x", text, dict(combo)), tasks, keys, style, token_format) for combo in combos}
    )


EMOTION = TaskSpec("emotion", "multilabel", ("anger", "joy", "sadness"))
BRUTE_FORCE = [
    AnswerConstraint((INTENT,)),
    AnswerConstraint((TOPIC20,)),
    AnswerConstraint((TaskSpec("slots", "token", (OTHER, "time", "time_zone")),), num_words=2),
    AnswerConstraint((TOPIC7, TOPIC20)),
    AnswerConstraint((INTENT, TaskSpec("slots", "token", (OTHER, "date"))), ("Intent", "Slots"), num_words=2),
    AnswerConstraint((EMOTION,)),
    AnswerConstraint((TOPIC7, EMOTION), style="json"),
    AnswerConstraint((TOPIC7,), ("topic",), style="json"),
    AnswerConstraint((EMOTION, TOPIC7, TaskSpec("slots", "token", (OTHER, "date"))), num_words=1, style="serial"),
    AnswerConstraint(
        (TaskSpec("slots", "token", (OTHER, "time", "time_zone")),), token_format="inline", words=("at", "5pm")
    ),
    AnswerConstraint(
        (INTENT, TaskSpec("slots", "token", (OTHER, "date"))), token_format="inline", words=('"hi"', "now", "x")
    ),
]
BRUTE_FORCE_IDS = [
    "label",
    "prefix-label",
    "slots",
    "json",
    "json-slots",
    "labels",
    "json-labels",
    "json-one",
    "serial",
    "inline",
    "json-inline",
]


@pytest.mark.parametrize(("prompt_format", "name"), FORMATS)
@pytest.mark.parametrize("constraint", BRUTE_FORCE, ids=BRUTE_FORCE_IDS)
def test_processor_allows_exactly_the_tokens_of_valid_continuations(tokenizers, prompt_format, name, constraint):
    """At every step of every trained answer's ids and of random walks, the allowed set equals brute force."""
    tokenizer = tokenizers(name)
    vocab, eos = TokenVocab.of(tokenizer), tokenizer.eos_token_id
    answers = label_answer_ids(tokenizer, all_answers(constraint), prompt_format)
    complete = {vocab.text_bytes(ids[:-1]) for ids in answers}  # what training writes, format affixes included
    prefixes = {text[:i] for text in complete for i in range(len(text) + 1)}

    def expected(text: bytes) -> set[int]:
        longer = [p[len(text) :] for p in prefixes if len(p) > len(text) and p.startswith(text)]
        return {i for piece in longer for i in vocab.ids_of(piece)} | ({eos} if text in complete else set())

    processor = ConstrainedAnswerProcessor(
        tokenizer, [constraint], prompt_length=2, prompt_format=prompt_format
    )  # reused: resets
    rng = torch.Generator().manual_seed(0)
    walks = [*answers, *[None] * 3]  # teacher-forced trained ids, then greedy on random scores
    for forced in walks:
        ids, text = [7, 8], b""
        while True:
            scores = processor(torch.tensor([ids]), torch.randn(1, len(tokenizer), generator=rng))
            allowed = set(torch.isfinite(scores[0]).nonzero().flatten().tolist())
            assert allowed == expected(text), (forced, text)
            token = forced[len(ids) - 2] if forced else int(scores.argmax())
            assert token in allowed
            if token == eos:
                assert text in complete
                break
            ids.append(token)
            text += vocab.token_bytes[token]


def test_processor_follows_rows_of_a_left_padded_batch(tokenizers):
    """Row states come from each row's own ids; a finished row is not masked."""
    tokenizer = tokenizers(SMOL)
    eos = tokenizer.eos_token_id
    processor = ConstrainedAnswerProcessor(tokenizer, [AnswerConstraint((TOPIC20,))] * 2, prompt_length=3)
    rec = tokenizer("rec", add_special_tokens=False)["input_ids"]
    autos = tokenizer("rec.autos", add_special_tokens=False)["input_ids"]
    assert len(rec) == 1 and autos[0] == rec[0]
    padded = [eos, eos, 5, *rec, *autos[1:]]
    rows = torch.tensor([padded, [5, 6, 7, *autos[: len(autos) - 1], eos]])
    scores = processor(rows, torch.zeros(2, len(tokenizer)))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [eos]
    assert torch.isfinite(scores[1]).all()  # wrote EOS: generate pads it


@pytest.mark.parametrize(("prompt_format", "name"), FORMATS)
@pytest.mark.parametrize(
    ("task_names", "token_format"),
    [
        (("intent",), "labels"),
        (("slots",), "labels"),
        (("intent", "slots"), "labels"),
        (("slots",), "inline"),
        (("intent", "slots"), "inline"),
    ],
)
def test_constrained_generation_of_an_untrained_model_always_parses(
    tokenizers, models, prompt_format, name, task_names, token_format
):
    tokenizer = tokenizers(name)
    template = dataclasses.replace(get_template("massive", task_names, 0), token_format=token_format)
    encoder = PromptEncoder(tokenizer, template, [INTENT, SLOTS], prompt_format=prompt_format)
    examples = utterances()  # 1 to 8 words: different list lengths and prompt lengths in one batch
    batch = left_padded(encoder, examples)
    assert (batch["attention_mask"][:, 0] == 0).any()
    constraints = [AnswerConstraint.for_example(encoder, example) for example in examples]
    outputs = constrained_generate(
        models(name), tokenizer, batch["input_ids"], batch["attention_mask"], constraints, prompt_format
    )
    for output, example in zip(outputs, examples):
        parsed = encoder.parse(output, example)
        assert all(answer.valid for answer in parsed.values()), (output, parsed)
        assert "intent" not in parsed or parsed["intent"].value in INTENT.labels
        if "slots" in parsed:
            assert len(parsed["slots"].value) == len(example.words)
            assert set(parsed["slots"].value) <= set(SLOTS.labels)
        keys, style = encoder.template.keys or None, encoder.template.style
        assert parse_answer(output, encoder.tasks, keys, len(example.words), style, token_format) == parsed
        if token_format == "inline" and "slots" in parsed:
            value = output if style == "serial" else json.loads(output)["task2"]
            assert [word for word in value.replace("]", " ").split() if "[" not in word and word != ":"] == (
                example.words
            )  # the input's words, copied


@pytest.mark.parametrize("style", ["serial", "json"])
@pytest.mark.parametrize("with_intent", [False, True])
def test_constrained_generation_of_label_sets_always_parses(tokenizers, models, style, with_intent):
    """Generic prompts: multi-label answers (alone or with another task) in both styles are always valid sets."""
    tokenizer = tokenizers(SMOL)
    tasks = [EMOTION, INTENT] if with_intent else [EMOTION]
    encoder = PromptEncoder(tokenizer, generic_template(tasks, 0, style), tasks, prompt_format="chat")
    examples = [
        Example(str(i), text, {"emotion": (), "intent": intent}) for i, (text, intent, _) in enumerate(UTTERANCES)
    ]
    batch = left_padded(encoder, examples)
    constraints = [AnswerConstraint.for_example(encoder, example) for example in examples]
    outputs = constrained_generate(models(SMOL), tokenizer, batch["input_ids"], batch["attention_mask"], constraints)
    for output, example in zip(outputs, examples):
        parsed = encoder.parse(output, example)
        assert all(answer.valid for answer in parsed.values()), (output, parsed)
        chosen = parsed["emotion"].value
        assert chosen == [label for label in EMOTION.labels if label in chosen]  # each once, in order
        assert output.startswith("{") if style == "json" else output.startswith("[" if not with_intent else "emotion: ")


# ---------------------------------------------------------------------------------------------------------------------
# Label scoring


def reference_scores(model, prompts: list[list[int]], candidates: list[list[int]], normalization: str) -> torch.Tensor:
    """Plain forward pass per prompt and candidate: no cache, no padding."""
    scores = torch.zeros(len(prompts), len(candidates))
    for b, prompt in enumerate(prompts):
        for c, answer in enumerate(candidates):
            with torch.no_grad():
                logprobs = model(torch.tensor([prompt + answer])).logits[0].float().log_softmax(-1)
            total = sum(logprobs[len(prompt) - 1 + j, token] for j, token in enumerate(answer))
            scores[b, c] = total / len(answer) if normalization == "mean" else total
    return scores


def news(i: int, num_words: int) -> Example:
    rng = random.Random(i)
    words = "the car engine price dealer road speed wheel graphics orbit launch".split()
    return Example(str(i), " ".join(rng.choice(words) for _ in range(num_words)), {"topic20": "rec", "topic7": "rec"})


@pytest.fixture
def attention():
    """Switch the tiny models' attention kernel for one test (the 4D tree mask differs: bool vs additive)."""
    switched = []

    def use(model, implementation: str):
        switched.append((model, model.config._attn_implementation))
        model.set_attn_implementation(implementation)
        return model

    yield use
    for model, implementation in reversed(switched):
        model.set_attn_implementation(implementation)


@pytest.mark.parametrize(("prompt_format", "name"), [("chat", SMOL), ("llama2", LLAMA2)])
@pytest.mark.parametrize("normalization", ["none", "mean"])
@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_score_labels_equals_an_unbatched_reference(
    tokenizers, models, attention, prompt_format, name, normalization, kernel
):
    tokenizer, model = tokenizers(name), attention(models(name), kernel)
    encoder = PromptEncoder(
        tokenizer, get_template("newsgroups", ["topic20"], 0), [TOPIC20], prompt_format=prompt_format
    )
    examples = [news(0, 3), news(1, 40), news(2, 11)]
    batch = left_padded(encoder, examples, max_new_tokens=10)
    candidates = candidate_answer_ids(encoder, label_candidates(encoder.tasks))
    assert candidates == label_answer_ids(tokenizer, TOPIC20.labels, prompt_format)  # "rec" is a prefix of "rec.autos"
    prompts = [encoder.encode_for_generation(example, 10)["input_ids"] for example in examples]
    expected = reference_scores(model, prompts, candidates, normalization)
    for per_pass in (1, 3, 256):  # one candidate per tree pass, several passes over one cache, all at once
        scores = score_labels(model, batch["input_ids"], batch["attention_mask"], candidates, normalization, per_pass)
        torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


def test_score_labels_ranks_every_combination_of_several_sequence_tasks(tokenizers, models):
    tokenizer, model = tokenizers(SMOL), models(SMOL)
    encoder = PromptEncoder(
        tokenizer, get_template("newsgroups", ["topic7", "topic20"], 0), [TOPIC7, TOPIC20], prompt_format="chat"
    )
    examples = [news(3, 5), news(4, 20)]
    batch = left_padded(encoder, examples, max_new_tokens=30)
    candidates = label_candidates(encoder.tasks)
    assert len(candidates) == 3 * 4 and candidates[0] == {"topic7": "comp", "topic20": "comp.graphics"}
    ids = candidate_answer_ids(encoder, candidates)
    texts = [
        render_answer(Example("", "", labels), encoder.tasks, encoder.template.keys or None) for labels in candidates
    ]
    assert ids == label_answer_ids(tokenizer, texts, "chat")
    scores = score_labels(model, batch["input_ids"], batch["attention_mask"], ids, candidates_per_pass=5)
    prompts = [encoder.encode_for_generation(example, 30)["input_ids"] for example in examples]
    torch.testing.assert_close(scores, reference_scores(model, prompts, ids, "none"), atol=1e-4, rtol=0)
    for best, example in zip(scores.argmax(-1).tolist(), examples):
        assert all(answer.valid for answer in encoder.parse(texts[best], example).values())


def test_candidate_tree_merges_shared_prefixes_into_one_node():
    tree = CandidateTree.of([[7, 1, 2, 0], [7, 1, 3, 0], [7, 0], [9, 0]])  # ids + EOS 0
    assert tree.first_tokens == [7, 7, 7, 9]
    # Nodes: (7), (7 1), (7 1 2), (7 1 3), (9); a candidate's last token (EOS) is read, never fed.
    assert tree.tokens == [7, 1, 2, 3, 9] and tree.depths == [1, 2, 3, 3, 1] and tree.parents == [-1, 0, 1, 1, -1]
    assert tree.picks == [(0, 1, 0), (1, 2, 0), (2, 0, 0), (0, 1, 1), (1, 3, 1), (3, 0, 1), (0, 0, 2), (4, 0, 3)]
    expected = [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert tree.ancestors().int().tolist() == expected


def test_score_labels_passes_depend_on_the_candidates_not_the_batch(tokenizers, models):
    """FSDP ranks must run the same forward passes: one over the prompts, one per ``candidates_per_pass``."""
    tokenizer, model = tokenizers(SMOL), models(SMOL)
    encoder = PromptEncoder(tokenizer, get_template("newsgroups", ["topic20"], 0), [TOPIC20], prompt_format="chat")
    candidates = candidate_answer_ids(encoder, label_candidates(encoder.tasks))
    calls = []
    hook = model.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        for examples in ([news(0, 3)], [news(1, 40), news(2, 11), news(3, 5)]):
            batch = left_padded(encoder, examples, max_new_tokens=10)
            for per_pass in (3, 4):
                calls.clear()
                score_labels(model, batch["input_ids"], batch["attention_mask"], candidates, "none", per_pass)
                assert len(calls) == 1 + -(-len(candidates) // per_pass)
                assert calls[0] == batch["input_ids"].shape
    finally:
        hook.remove()


def test_label_scoring_rejects_token_tasks_and_right_padding(models, tokenizers):
    with pytest.raises(ValueError, match="token task"):
        label_candidates([INTENT, SLOTS])
    ids = torch.tensor([[5, 6, 7], [5, 6, 0]])
    with pytest.raises(ValueError, match="left-padded"):
        score_labels(models(SMOL), ids, (ids > 0).long(), [[5, 2]])
    ids = torch.tensor([[5, 6, 7]])
    flash = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    with pytest.raises(ValueError, match="'flash_attention_2' cannot take the 4D tree mask"):
        score_labels(flash, ids, torch.ones_like(ids), [[5, 2]])
