"""Prompts: the paper's templates, few-shot draws, prompt formats, exact answer masks and token budgets."""

from __future__ import annotations

import random

import pytest
import torch

from lit_clf.data.collate import pad_batch
from lit_clf.data.tasks import IGNORE_INDEX, OTHER, Example, TaskSpec
from lit_clf.prompting.answers import ParsedAnswer
from lit_clf.prompting.encoding import PromptEncoder, allocate_budgets, select_shots, water_fill
from lit_clf.prompting.templates import PAPER_LISTINGS, PromptTemplate, get_template, load_template

NEWSGROUPS = (
    "alt.atheism comp.graphics comp.os.ms-windows.misc comp.sys.ibm.pc.hardware comp.sys.mac.hardware comp.windows.x "
    "misc.forsale rec.autos rec.motorcycles rec.sport.baseball rec.sport.hockey sci.crypt sci.electronics sci.med "
    "sci.space soc.religion.christian talk.politics.guns talk.politics.mideast talk.politics.misc talk.religion.misc"
).split()
SPECS = {
    "topic20": TaskSpec("topic20", "sequence", tuple(NEWSGROUPS)),
    "topic7": TaskSpec("topic7", "sequence", tuple(sorted({name.split(".")[0] for name in NEWSGROUPS}))),
    "intent": TaskSpec("intent", "sequence", ("alarm_set", "calendar_query", "play_music", "weather_query")),
    "slots": TaskSpec("slots", "token", (OTHER, "date", "place_name", "song_name", "time")),
}
UTTERANCES = [
    ("wake me up at five am this week", "alarm_set", "Other Other Other Other time time date date"),
    ("what is the weather in paris today", "weather_query", "Other Other Other Other Other place_name date"),
    ("play yellow submarine", "play_music", "Other song_name song_name"),
    ("what is on my calendar tomorrow", "calendar_query", "Other Other Other Other Other date"),
]
WORDS = "the car engine price dealer road speed wheel brake oil fuel mile owner model year paint seat door".split()


def news(index: int, num_words: int = 60, split: str = "train") -> Example:
    """A 20NG-like post: seeded random words, ending with a marker word."""
    topic20 = NEWSGROUPS[index % len(NEWSGROUPS)]
    rng = random.Random(index)
    text = " ".join(rng.choice(WORDS) for _ in range(num_words)) + f" ENDMARK{index}"
    return Example(f"{split}/{topic20}/{index}", text, {"topic20": topic20, "topic7": topic20.split(".")[0]})


def utterance(index: int) -> Example:
    text, intent, slots = UTTERANCES[index % len(UTTERANCES)]
    return Example(str(index), text, {"intent": intent, "slots": tuple(slots.split())})


NEWS_POOL = [news(i) for i in range(30)]
MASSIVE_POOL = [utterance(i) for i in range(30)]
DATASETS = {"newsgroups": (NEWS_POOL, news), "massive": (MASSIVE_POOL, utterance)}

# (format, tokenizer folder) pairs the project supports.
FORMATS = [
    ("raw", "smollm2-135m-instruct-tokenizer"),
    ("raw", "llama2-tokenizer"),
    ("llama2", "llama2-tokenizer"),
    ("chat", "llama3-tokenizer"),
    ("chat", "smollm2-135m-instruct-tokenizer"),
]


#: The paper's prompts as the code loads them, keyed like PAPER_LISTINGS.
PAPER_TEMPLATES = {key: get_template(*key) for key in PAPER_LISTINGS}


def encoder(tokenizer, dataset: str, tasks: tuple[str, ...], shots: int, prompt_format: str, **kwargs) -> PromptEncoder:
    template = get_template(dataset, tasks, shots)
    return PromptEncoder(
        tokenizer, template, [SPECS[t] for t in tasks], prompt_format=prompt_format, pool=DATASETS[dataset][0], **kwargs
    )


def answer_segment(answer: str, prompt_format: str) -> str:
    """What follows the prompt, written out independently of the code under test."""
    return {"raw": f" {answer}", "llama2": f" {answer} ", "chat": answer}[prompt_format]


# ---------------------------------------------------------------------------------------------------------------------
# Templates


def test_every_listing_is_registered():
    assert sorted(template.source for template in PAPER_TEMPLATES.values()) == sorted(
        f"Listing {i}" for i in range(1, 13)
    )
    assert set(PAPER_TEMPLATES) == {
        (dataset, tasks, shots)
        for dataset, task_sets in {
            "newsgroups": [("topic20",), ("topic7",), ("topic7", "topic20")],
            "massive": [("intent",), ("slots",), ("intent", "slots")],
        }.items()
        for tasks in task_sets
        for shots in (0, 5)
    }


@pytest.mark.parametrize("key", list(PAPER_TEMPLATES), ids=lambda key: f"{key[0]}-{'+'.join(key[1])}-{key[2]}")
def test_listing_renders_labels_examples_and_text(key):
    dataset, tasks, shots = key
    template = PAPER_TEMPLATES[key]
    pool, make = DATASETS[dataset]
    query = pool[3]
    picked = select_shots(query, pool, shots, seed=0)
    examples = [(shot.text, f"ANSWER{i}") for i, shot in enumerate(picked)]
    system, user = template.render([SPECS[t] for t in tasks], query.text, examples)
    prompt = (system or "") + "\n" + user
    for name in tasks:
        for label in SPECS[name].labels:
            if label != OTHER:
                assert f"'{label}'" in prompt or f'"{label}"' in prompt, label
    assert "{" not in prompt.replace('{"task1": "task1_label", "task2": "task2_label"}', "")
    assert prompt.count(query.text) == 1
    block = "Beginning of <<News>>" if dataset == "newsgroups" else "Beginning of <<Utter>>"
    assert prompt.count(block) == shots + 1
    assert ("Beginning of <<Examples>>" in prompt) == (shots > 0)
    assert [f"ANSWER{i}" in prompt for i in range(shots)] == [True] * shots
    assert len(picked) == shots and query.id not in {shot.id for shot in picked}
    cue = "Output:" if len(tasks) > 1 else "Slots:" if tasks == ("slots",) else "Label:"
    assert user.endswith(f"End of <<{block[15:-2]}>>\n\n{cue}")


def test_listing_7_wording():
    template = get_template("massive", ["intent"], 0)
    system, user = template.render([SPECS["intent"]], "wake me up at nine")
    assert system is None
    assert user == (
        "You will be given an utter text.\n"
        "Your task is to classify it as one of the labels in the list "
        "['alarm_set', 'calendar_query', 'play_music', 'weather_query'].\n"
        "\n"
        "Output the label only and absolutely nothing else.\n"
        "Now it is your turn.\n"
        "\n"
        "Beginning of <<Utter>>\n"
        "wake me up at nine\n"
        "End of <<Utter>>\n"
        "\n"
        "Label:"
    )


def test_listing_11_wording_system_and_query():
    template = get_template("massive", ["slots", "intent"], 0)  # any order: the answer order is the paper's
    assert template.tasks == ("intent", "slots") and template.keys == ("task1", "task2")
    system, user = template.render([SPECS["intent"], SPECS["slots"]], "play yellow submarine")
    assert system == (
        "You will be given an utter text.\n"
        "You are given two classification tasks.\n"
        'You should output the result as a two json fields as {"task1": "task1_label", "task2": "task2_label"}'
    )
    assert user == (
        "In the first task, given the utter text, you are asked to classify it as one of the labels in the list "
        "['alarm_set', 'calendar_query', 'play_music', 'weather_query'].\n"
        "In the second task, given the utter text, you are asked to classify each of the word in the utter text as "
        "one of the labels in the list ['date', 'place_name', 'song_name', 'time']. If none of the labels in the "
        'list are correct, then output the label for that word as "Other". Put all the labels in the slots list.\n'
        "\n"
        "Output the two json fields only and absolutely nothing else.\n"
        "Now it is your turn.\n"
        "\n"
        "Beginning of <<Utter>>\n"
        "play yellow submarine\n"
        "End of <<Utter>>\n"
        "\n"
        "Output:"
    )


def test_20ng_label_list_styles_follow_the_paper():
    _, user = get_template("newsgroups", ["topic20", "topic7"], 0).render([SPECS["topic7"], SPECS["topic20"]], "x")
    assert 'in the list ["alt", "comp", "misc", "rec", "sci", "soc", "talk"] and change task1_label' in user
    assert "in the list ['alt.atheism', 'comp.graphics', 'comp.os.ms-windows.misc'," in user
    assert "talk.religion.misc'] and change task2_label to the correct label in the list.\n\n\nOutput the" in user


def test_five_shot_block_layout():
    template = get_template("newsgroups", ["topic7"], 5)
    _, user = template.render([SPECS["topic7"]], "query", [("first post", "rec"), ("second post", "sci")])
    assert (
        "Below are some examples with the correct classification:\n\n"
        "Beginning of <<Examples>>\n"
        "Beginning of <<News>>\nfirst post\nEnd of <<News>>\nLabel: rec\n\n"
        "Beginning of <<News>>\nsecond post\nEnd of <<News>>\nLabel: sci\n"
        "End of <<Examples>>\n\n"
        "Output the label only" in user
    )


def test_get_template_unknown_combination():
    with pytest.raises(
        ValueError, match="no paper prompt for massive intent 3-shot \\(paper prompts: newsgroups topic20"
    ):
        get_template("massive", ["intent"], 3)


# ---------------------------------------------------------------------------------------------------------------------
# User template files


def test_text_template_file(tmp_path):
    path = tmp_path / "intent.txt"
    path.write_text("Pick one of {labels_intent:json} for:\n{text}\nOther is {other}. {{literal}}\nLabel:")
    template = load_template(path, ["intent"], 0)
    assert template.render([SPECS["intent"]], "hi") == (
        None,
        'Pick one of ["alarm_set", "calendar_query", "play_music", "weather_query"] for:\nhi\n'
        "Other is Other. {literal}\nLabel:",
    )
    assert get_template("ignored", ["intent"], 0, path=path) == template


def test_yaml_template_file(tmp_path):
    path = tmp_path / "multi.yaml"
    path.write_text(
        "system: Answer in JSON.\n"
        "prompt: |-\n  {examples}\n  Utterance: {text}\n  Labels: {labels_intent} / {labels_slots}\n"
        "shot: 'U: {text} -> {answer}'\n"
        "keys: [intent, slots]\n"
    )
    template = load_template(path, ["intent", "slots"], 2)
    system, user = template.render(
        [SPECS["intent"], SPECS["slots"]], "hi", [("a", '{"intent": "x"}'), ("b", '{"intent": "y"}')]
    )
    assert system == "Answer in JSON."
    assert user == (
        'U: a -> {"intent": "x"}\n\nU: b -> {"intent": "y"}\nUtterance: hi\n'
        "Labels: ['alarm_set', 'calendar_query', 'play_music', 'weather_query'] / "
        "['date', 'place_name', 'song_name', 'time']"
    )
    assert template.keys == ("intent", "slots")


@pytest.mark.parametrize(
    ("content", "shots", "message"),
    [
        ("{text} {labels_topic20}", 0, "unknown placeholder {labels_topic20}; known: {examples}, {labels_intent}"),
        ("{text} {News}", 0, "unknown placeholder {News}"),
        ("{text} {labels_intent:csv}", 0, "placeholder {labels_intent:csv} has an unknown format 'csv'"),
        ("{text} {other:>5}", 0, "placeholder {other:>5} has an unknown format '>5'"),
        ("{text} {", 0, "malformed template"),
        ("{text!r}", 0, "placeholder {text!r}: conversions are not supported"),
        ("{text} {text.upper}", 0, "unknown placeholder {text.upper}"),
        ("{labels_intent}", 0, "the prompt has no {text} placeholder"),
        ("{text}", 5, "shots=5 needs {examples} exactly when shots > 0"),
        ("{text} {examples}", 0, "shots=0 needs {examples} exactly when shots > 0"),
    ],
)
def test_template_file_errors_name_the_file(tmp_path, content, shots, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_template(path, ["intent"], shots)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompt: [unclosed", "not valid YAML/JSON"),
        ("- a list", "expected a mapping with 'prompt'"),
        ("prompt: '{text}'\ncolour: red", "expected a mapping with 'prompt'"),
        ("prompt: 3", "must be strings"),
        ("prompt: '{text}'\nvariant: [a, b]", "must be strings"),
        ("prompt: '{text}'\nkeys: ab", "'keys' must be a list of strings"),
        ("prompt: '{text}'\nkeys: [only_one, two, three]", "2 tasks need 2 keys"),
        ("prompt: '{text} {examples}'\nshot: '{text}'", "the shot pattern must use exactly {text} and {answer}"),
    ],
)
def test_yaml_template_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_template(path, ["intent", "slots"], 1 if "shot:" in content else 0)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_missing_template_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read the prompt template"):
        load_template(tmp_path / "nope.txt", ["intent"], 0)


# ---------------------------------------------------------------------------------------------------------------------
# Few-shot draws


def test_shots_are_deterministic_per_seed_and_query():
    ids = [[shot.id for shot in select_shots(query, NEWS_POOL, 5, seed=1)] for query in NEWS_POOL]
    again = [[shot.id for shot in select_shots(query, NEWS_POOL, 5, seed=1)] for query in reversed(NEWS_POOL)]
    assert ids == list(reversed(again))  # independent of the order queries are encoded in
    other_seed = [[shot.id for shot in select_shots(query, NEWS_POOL, 5, seed=2)] for query in NEWS_POOL]
    assert ids != other_seed
    assert len({tuple(row) for row in ids}) > 1  # queries get different examples


def test_shots_never_include_the_query():
    pool = NEWS_POOL[:6]  # the query plus exactly five others
    for query in pool:
        shots = select_shots(query, pool, 5, seed=0)
        assert len(shots) == 5 and len({shot.id for shot in shots}) == 5
        assert query.id not in {shot.id for shot in shots}
    assert select_shots(pool[0], pool, 0, seed=0) == []
    with pytest.raises(ValueError, match="6 examples cannot give 6 shots"):
        select_shots(pool[0], pool, 6, seed=0)


def test_encoder_uses_the_drawn_shots(tokenizers):
    enc = encoder(tokenizers("llama3-tokenizer"), "newsgroups", ("topic7",), 5, "chat", seed=3)
    query = news(100, split="test")
    text = enc.tokenizer.decode(enc.encode_for_generation(query, 8)["input_ids"])
    for shot in select_shots(query, NEWS_POOL, 5, seed=3):
        assert f"{shot.text}\nEnd of <<News>>\nLabel: {shot.labels['topic7']}" in text


# ---------------------------------------------------------------------------------------------------------------------
# Exact masks, per format and task kind

TASK_SETS = [
    ("newsgroups", ("topic20",)),
    ("massive", ("slots",)),
    ("massive", ("intent", "slots")),
    ("newsgroups", ("topic7",)),
]


@pytest.mark.parametrize("shots", [0, 5])
@pytest.mark.parametrize(("dataset", "tasks"), TASK_SETS, ids=lambda v: "+".join(v) if isinstance(v, tuple) else v)
@pytest.mark.parametrize(("prompt_format", "name"), FORMATS, ids=[f"{f}-{n.split('-')[0]}" for f, n in FORMATS])
def test_mask_counts_and_prompt_equals_generation_input(tokenizers, prompt_format, name, dataset, tasks, shots):
    tok = tokenizers(name)
    enc = encoder(tok, dataset, tasks, shots, prompt_format)
    example = DATASETS[dataset][1](7)
    feature = enc.encode_for_training(example)
    ids, labels = feature["input_ids"], feature["labels"]
    answer = tok(answer_segment(enc.answer_text(example), prompt_format), add_special_tokens=False)["input_ids"]
    n_answer = sum(label != IGNORE_INDEX for label in labels)
    assert n_answer == len(answer) + 1
    assert len(ids) == len(labels) == len(feature["attention_mask"]) and set(feature["attention_mask"]) == {1}
    assert labels[: len(ids) - n_answer] == [IGNORE_INDEX] * (len(ids) - n_answer)  # the mask is one prefix
    assert labels[-n_answer:] == ids[-n_answer:] == answer + [tok.eos_token_id]
    generation = enc.encode_for_generation(example, max_new_tokens=n_answer)
    assert generation["input_ids"] == ids[:-n_answer]
    assert generation["attention_mask"] == [1] * len(generation["input_ids"])
    if tok.bos_token_id is not None and "llama" in name:
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    parsed = enc.parse(tok.decode(ids[-n_answer:], skip_special_tokens=True), example)
    assert parsed == {task: ParsedAnswer(value, True) for task, value in _gold(example, tasks).items()}


def _gold(example: Example, tasks: tuple[str, ...]) -> dict:
    return {t: example.labels[t] if SPECS[t].kind == "sequence" else list(example.labels[t]) for t in tasks}


def test_llama2_format_is_metas(tokenizers):
    tok = tokenizers("llama2-tokenizer")
    enc = encoder(tok, "newsgroups", ("topic7",), 0, "llama2")
    example = news(5)
    _, user = enc.template.render([SPECS["topic7"]], example.text)
    feature = enc.encode_for_training(example)
    # Meta's llama/generation.py: encode(f"{B_INST} {prompt.strip()} {E_INST} {answer.strip()} ", bos, eos).
    expected = [tok.bos_token_id] + tok(f"[INST] {user} [/INST] comp ", add_special_tokens=False)["input_ids"]
    assert feature["input_ids"] == expected + [tok.eos_token_id]
    assert tok.convert_ids_to_tokens(feature["input_ids"][-4:]) == ["]", "▁comp", "▁", "</s>"]


def test_llama2_system_prompt_uses_sys_block(tokenizers):
    tok = tokenizers("llama2-tokenizer")
    enc = encoder(tok, "massive", ("intent", "slots"), 0, "llama2")
    text = tok.decode(enc.encode_for_generation(utterance(0), 16)["input_ids"][1:])
    assert text.startswith("[INST] <<SYS>>\nYou will be given an utter text.\n")
    assert '"task2_label"}\n<</SYS>>\n\nIn the first task,' in text
    assert text.endswith("End of <<Utter>>\n\nOutput: [/INST]")


def test_chat_format_matches_the_chat_template(tokenizers):
    tok = tokenizers("llama3-tokenizer")
    enc = encoder(tok, "massive", ("intent", "slots"), 5, "chat")
    example = utterance(9)
    system, user = enc.template.render(enc.tasks, example.text, _shots(enc, example))
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": enc.answer_text(example)},
    ]
    # Llama 3 ends the assistant turn with <|eot_id|>, its EOS: training ids = the full conversation's ids.
    assert enc.encode_for_training(example)["input_ids"] == tok.apply_chat_template(messages)["input_ids"]


def test_chat_format_smollm2_differs_only_by_the_trailing_newline(tokenizers):
    tok = tokenizers("smollm2-135m-instruct-tokenizer")
    enc = encoder(tok, "massive", ("slots",), 0, "chat")
    example = utterance(2)
    _, user = enc.template.render(enc.tasks, example.text)
    full = tok.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": enc.answer_text(example)}]
    )["input_ids"]
    ids = enc.encode_for_training(example)["input_ids"]
    assert full[: len(ids)] == ids and tok.decode(full[len(ids) :]) == "\n"
    assert tok.decode(ids).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def _shots(enc: PromptEncoder, example: Example) -> list[tuple[str, str]]:
    from lit_clf.prompting.answers import render_answer

    return [(shot.text, render_answer(shot, enc.tasks)) for shot in enc.shots_for(example)]


def test_chat_format_needs_a_chat_template(tokenizers):
    with pytest.raises(ValueError, match="no chat template"):
        encoder(tokenizers("llama2-tokenizer"), "newsgroups", ("topic7",), 0, "chat")
    with pytest.raises(ValueError, match="prompt_format: expected one of raw, llama2, chat"):
        encoder(tokenizers("llama2-tokenizer"), "newsgroups", ("topic7",), 0, "alpaca")
    with pytest.raises(ValueError, match="pool: 5-shot prompts need more than 5 examples"):
        PromptEncoder(
            tokenizers("llama2-tokenizer"),
            get_template("newsgroups", ["topic7"], 5),
            [SPECS["topic7"]],
            "raw",
            pool=NEWS_POOL[:5],
        )
    with pytest.raises(ValueError, match="no spec for 'topic20', which Listing 5 asks for"):
        PromptEncoder(
            tokenizers("llama2-tokenizer"),
            get_template("newsgroups", ["topic7", "topic20"], 0),
            [SPECS["topic7"]],
            "raw",
        )


# ---------------------------------------------------------------------------------------------------------------------
# Token budgets: documents are cut, answers never


def test_water_fill_and_allocation():
    assert water_fill([100, 100, 3000, 3000, 3000], 500) == [100, 100, 100, 100, 100]
    assert water_fill([10, 50, 3000], 300) == [10, 50, 240]
    assert water_fill([10, 20], 1000) == [10, 20]
    assert water_fill([5, 5], -3) == [0, 0]
    assert allocate_budgets(5000, [3000] * 5, 1000) == (500, [100] * 5)  # long query keeps half
    assert allocate_budgets(300, [3000] * 5, 1000) == (300, [140] * 5)  # short query kept whole
    assert allocate_budgets(5000, [10] * 5, 1000) == (950, [10] * 5)  # short examples kept whole
    assert allocate_budgets(5000, [], 1000) == (1000, [])


@pytest.mark.parametrize(
    ("dataset", "tasks", "shots", "max_length"),
    [
        ("newsgroups", ("topic7",), 0, 256),
        ("newsgroups", ("topic7",), 5, 512),
        ("newsgroups", ("topic7", "topic20"), 5, 1024),
    ],
)
@pytest.mark.parametrize(("prompt_format", "name"), FORMATS, ids=[f"{f}-{n.split('-')[0]}" for f, n in FORMATS])
def test_long_documents_are_cut_to_fit_and_answers_kept(
    tokenizers, prompt_format, name, dataset, tasks, shots, max_length
):
    tok = tokenizers(name)
    pool = [news(i, num_words=3000) for i in range(10)]
    template = get_template(dataset, tasks, shots)
    enc = PromptEncoder(
        tok, template, [SPECS[t] for t in tasks], prompt_format=prompt_format, max_length=max_length, pool=pool
    )
    example = news(99, num_words=5000, split="test")
    feature = enc.encode_for_training(example)
    ids = feature["input_ids"]
    answer = tok(answer_segment(enc.answer_text(example), prompt_format), add_special_tokens=False)["input_ids"]
    assert max_length - 16 <= len(ids) <= max_length  # cut, yet the budget is used
    assert ids[-len(answer) - 1 :] == answer + [tok.eos_token_id]
    assert sum(label != IGNORE_INDEX for label in feature["labels"]) == len(answer) + 1
    prompt = enc.encode_for_generation(example, max_new_tokens=len(answer) + 1)["input_ids"]
    assert prompt == ids[: -len(answer) - 1]
    text = tok.decode(prompt)
    assert example.text[:40] in text and "ENDMARK99" not in text  # the query is cut at its end
    assert text.count("End of <<News>>\n") == shots + 1  # every example block and its answer survive
    for shot in enc.shots_for(example):
        assert shot.text[:20] in text and f"ENDMARK{shot.id.rsplit('/', 1)[1]}" not in text
    long_gen = enc.encode_for_generation(example, max_new_tokens=64)["input_ids"]
    assert len(long_gen) + 64 <= max_length


def test_short_prompts_are_not_cut(tokenizers):
    tok = tokenizers("llama3-tokenizer")
    enc = encoder(tok, "newsgroups", ("topic7",), 5, "chat", max_length=16384)
    example = news(3, num_words=2000)
    text = tok.decode(enc.encode_for_generation(example, 32)["input_ids"])
    assert example.text in text and all(shot.text in text for shot in enc.shots_for(example))


def test_max_length_too_small_for_the_template(tokenizers):
    enc = encoder(tokenizers("llama2-tokenizer"), "newsgroups", ("topic20",), 0, "llama2", max_length=100)
    with pytest.raises(ValueError, match=r"max_length=100 cannot hold example 'train/.*': the prompt without its"):
        enc.encode_for_training(news(1))


# ---------------------------------------------------------------------------------------------------------------------
# Padding


def test_pad_batch_right_and_left():
    features = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "attention_mask": [1, 1, 1]},
        {"input_ids": [8], "labels": [8], "attention_mask": [1]},
    ]
    right = pad_batch(features, pad_id=0, side="right")
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(tensor.dtype == torch.long for tensor in right.values())
    left = pad_batch([{k: v for k, v in f.items() if k != "labels"} for f in features], pad_id=2, side="left")
    assert set(left) == {"input_ids", "attention_mask"}
    assert left["input_ids"].tolist() == [[5, 6, 7], [2, 2, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pad_batch_errors():
    with pytest.raises(ValueError, match="side: expected 'left' or 'right'"):
        pad_batch([{"input_ids": [1]}], 0, side="middle")
    with pytest.raises(ValueError, match="no padding value for 'index'"):
        pad_batch([{"input_ids": [1], "index": [0]}], 0)


def test_template_dataclass_defaults():
    template = PromptTemplate(("a", "b"), 0, "{text}")
    assert template.style == "json" and template.keys == ("task1", "task2") and template.source == "template"


def test_generic_prompts_name_every_task_and_answer_in_the_decoders_syntax():
    from lit_clf.data.tasks import Example, TaskSpec
    from lit_clf.prompting.answers import parse_answer, render_answer
    from lit_clf.prompting.generic_prompts import generic_template

    sentiment = TaskSpec("sentiment", "sequence", ("negative", "positive"))
    ner = TaskSpec("ner", "token", ("O", "B-person", "I-person"), "bio")
    _, user = generic_template([sentiment]).render([sentiment], "John is happy")
    assert user == (
        "You will be given a text. Your task is to classify the text as one of the labels in the list "
        "['negative', 'positive'].\nOutput the label only and absolutely nothing else.\n\nText: John is happy\nAnswer:"
    )
    both = generic_template([sentiment, ner], shots=5)
    example = Example("1", "John is happy", {"sentiment": "positive", "ner": ("B-person", "O", "O")})
    answer = render_answer(example, [sentiment, ner], both.keys)
    assert answer == '{"sentiment": "positive", "ner": ["B-person", "O", "O"]}'
    _, user = both.render([sentiment, ner], "Mary left", [("John is happy", answer)])
    assert 'fields "sentiment", "ner"' in user and "['B-person', 'I-person'], or \"O\"" in user
    assert f"Text: John is happy\nAnswer: {answer}\n\nText: Mary left\nAnswer:" in user
    parsed = parse_answer(answer, [sentiment, ner], both.keys, num_words=3)
    assert parsed["sentiment"].value == "positive" and parsed["ner"].value == ["B-person", "O", "O"]


def test_generic_prompts_in_both_styles_with_label_sets_and_descriptions():
    from lit_clf.prompting.answers import parse_answer, render_answer
    from lit_clf.prompting.generic_prompts import generic_template

    genres = TaskSpec("genres", "multilabel", ("crime", "romance"))
    sentiment = TaskSpec("sentiment", "sequence", ("negative", "positive"))
    described = generic_template([genres], style="json", descriptions={"genres": {"crime": "a {heist} or a murder"}})
    assert described.style == "json" and described.keys == ("genres",)
    _, user = described.render([genres], "a heist")
    assert user == (
        'You will be given a text and a classification task. Answer with one JSON object whose fields "genres" hold '
        "the answers of the tasks, in this order.\nTask 'genres': choose every label in the list ['crime', 'romance'] "
        "that applies to the whole text (none, one or several); the answer is a JSON list of those labels in the "
        "order of the list, [] when none applies.\nOutput the JSON object only and absolutely nothing else.\n"
        "Labels of 'genres':\n- crime: a {heist} or a murder\n\nText: a heist\nAnswer:"
    )
    example = Example("1", "love and crime", {"genres": ("romance", "crime"), "sentiment": "positive"})
    assert render_answer(example, [genres], described.keys, described.style) == '{"genres": ["crime", "romance"]}'
    serial = generic_template([sentiment, genres], style="serial")
    assert serial.keys == () and 'one line per task, in this order: "sentiment", "genres"' in serial.prompt
    answer = render_answer(example, [sentiment, genres], serial.keys, serial.style)
    assert answer == 'sentiment: positive\ngenres: ["crime", "romance"]'
    parsed = parse_answer("Genres: ['romance']\n- sentiment: Negative.", [sentiment, genres], style="serial")
    assert parsed["sentiment"].value == "negative" and parsed["genres"].value == ["romance"]
    assert all(p.valid for p in parsed.values())
    missing = parse_answer("sentiment: positive", [sentiment, genres], style="serial")
    assert missing["genres"] == ParsedAnswer([], False, "no line genres: ...")


def test_a_prompt_file_sets_its_style(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("prompt: 'Classify: {text}'\nstyle: json\n")
    template = load_template(path, ["intent"], 0)
    assert (template.style, template.keys) == ("json", ("task1",))
    path.write_text("prompt: 'Classify: {text}'\nstyle: serial\nkeys: [a, b]\n")
    with pytest.raises(ValueError, match="keys name the fields of a json answer; the style is serial"):
        load_template(path, ["intent", "slots"], 0)
    path.write_text("prompt: 'Classify: {text}'\nstyle: xml\n")
    with pytest.raises(ValueError, match="style: expected one of serial, json, got 'xml'"):
        load_template(path, ["intent"], 0)
