"""``loss_weighting: task``: each task's part of the answer averaged on its own, then the tasks averaged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from lit_clf.data.base import DatasetInfo
from lit_clf.data.tasks import IGNORE_INDEX
from lit_clf.decoder.features import DecoderFeaturizer
from lit_clf.decoder.loss import answer_cross_entropy
from tests.decoder.test_packing import assert_same_loss_and_grads, loss_and_grads
from tests.helpers import REPO, make_decoder, run_cli, toy_examples, toy_specs

INFO = DatasetInfo("massive")


def decode(module, ids) -> str:
    return module.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("prompt_format", ["chat", "llama2", "raw"])
def test_answer_tokens_split_at_the_end_of_each_tasks_value(model_dirs, prompt_format):
    module = make_decoder(
        model_dirs["chat" if prompt_format == "chat" else "llama2"], toy_specs(), prompt_format=prompt_format
    )
    encoder = module.featurizer.use(INFO)
    example = toy_examples()[0]
    ids, tasks = encoder.answer_ids_and_tasks(example)
    assert ids == encoder.answer_ids(example)  # the training answer ids, from one tokenization
    assert len(tasks) == len(ids) + 1 and tasks[-1] == 1  # one per answer id, then EOS (the last task's)
    cut = tasks.index(1)
    assert tasks == [0] * cut + [1] * (len(tasks) - cut)  # one run per task, in answer order
    intent = decode(module, ids[:cut])
    rest = decode(module, ids[cut:])
    assert intent.strip().startswith('{"task1": "') and f'"{example.labels["intent"]}"' in intent
    assert "task2" not in intent and rest.lstrip(",").strip().startswith('"task2": [')
    feature = module.featurizer.featurize([example], train=True, info=INFO)[0]
    assert "answer_task" not in feature  # only with loss_weighting: task


def features(module, count=4):
    return module.featurizer.featurize(toy_examples("val-")[:count], train=True, info=INFO)


def reference_loss(module, batch) -> torch.Tensor:
    """Per token, from the full logits of the padded rows: each task's mean, then the mean over tasks."""
    logits = module(batch["input_ids"], batch["attention_mask"])[:, :-1].float()
    targets, tasks = batch["labels"][:, 1:], batch["answer_task"][:, 1:]
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return torch.stack([per_token[tasks == k].mean() for k in (0, 1)]).mean()


def test_consolidated_task_loss_equals_the_reference_and_the_packed_batch(tiny_smollm_dir):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", loss_weighting="task")
    feats = features(module)
    assert all(len(f["answer_task"]) == len(f["labels"]) for f in feats)
    assert all(
        (f["answer_task"][i] == IGNORE_INDEX) == (f["labels"][i] == IGNORE_INDEX)
        for f in feats
        for i in range(len(f["labels"]))
    )
    module.featurizer.share_prefix = False
    padded = module.featurizer.collate(feats)
    with torch.no_grad():
        loss, expected = module.answer_loss(padded), reference_loss(module, padded)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        token = answer_cross_entropy(*_logits_and_gold(module, padded))
    assert abs(loss - token) > 1e-3  # the weighting changes the loss: intent is a small part of each answer
    packed = assert_same_loss_and_grads(module, feats)  # packed with a shared prefix: same loss and gradients
    assert "answer_task" in packed and packed["answer_task"].shape == packed["labels"].shape


def _logits_and_gold(module, batch):
    logits = module(batch["input_ids"], batch["attention_mask"])[:, :-1]
    return logits, batch["labels"][:, 1:]


def test_with_one_task_the_task_loss_is_the_token_loss(tiny_smollm_dir):
    results = []
    for weighting in ("token", "task"):
        module = make_decoder(tiny_smollm_dir, toy_specs(["slots"]), prompt_format="chat", loss_weighting=weighting)
        results.append(loss_and_grads(module, module.featurizer.collate(features(module))))
    (token_loss, token_grads), (task_loss, task_grads) = results
    torch.testing.assert_close(task_loss, token_loss)
    for name, grad in token_grads.items():
        torch.testing.assert_close(task_grads[name], grad, msg=name)


def test_answer_cross_entropy_weighs_tasks_equally():
    logits = torch.zeros(5, 4)
    logits[:, 0] = 2.0  # every position predicts class 0 best
    gold = torch.tensor([0, 0, 0, 1, IGNORE_INDEX])
    tasks = torch.tensor([0, 1, 1, 1, IGNORE_INDEX])
    per_token = F.cross_entropy(logits, gold.clamp(min=0), reduction="none")
    expected = (per_token[0] + per_token[1:4].mean()) / 2
    torch.testing.assert_close(answer_cross_entropy(logits, gold, tasks), expected)
    torch.testing.assert_close(answer_cross_entropy(logits, gold), per_token[:4].mean())


def test_an_unknown_weighting_is_a_one_line_error(tiny_smollm_dir):
    with pytest.raises(ValueError, match=r"^loss_weighting: expected one of token, task, got 'example'$"):
        make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", loss_weighting="example")


def test_the_loss_config_composes_with_the_consolidated_recipe(capsys):
    configs = REPO / "configs"
    recipe = ["-c", str(configs / "massive/smollm2-135m-joint.yaml")]
    run_cli(["fit", *recipe, "-c", str(configs / "decoder/loss/task.yaml"), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["loss_weighting"] == "task"
    run_cli(["fit", *recipe, "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["loss_weighting"] == "token"  # the paper's


def test_the_task_loss_needs_a_fast_tokenizer(tiny_smollm_dir, monkeypatch):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat")
    monkeypatch.setattr(type(module.tokenizer), "is_fast", property(lambda self: False))
    message = r"^loss_weighting='task': tokenizer '.*' gives no character offsets \(not a fast tokenizer\); use "
    with pytest.raises(ValueError, match=message + r"loss_weighting='token'$"):
        DecoderFeaturizer(module.tokenizer, toy_specs(), "chat", loss_weighting="task")
    DecoderFeaturizer(module.tokenizer, toy_specs(), "chat")  # the paper's loss needs no offsets
