"""Metrics: MASSIVE-convention slot F1 by hand and against seqeval, DDP-correct torchmetrics classes."""

from __future__ import annotations

import tempfile
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from seqeval.metrics import f1_score

from lit_clf.data.tasks import OTHER
from lit_clf.metrics import (
    Accuracy,
    InvalidRate,
    SlotExactMatch,
    SlotF1,
    align_prediction,
    exact_match,
    sequence_accuracy,
    slot_f1,
    to_bio,
)

OUT = OTHER  # short for the tables below
LABELS = (OTHER, "date", "time", "place_name")


# ---------------------------------------------------------------------------------------------------------------------
# to_bio, align_prediction


@pytest.mark.parametrize(
    "labels, bio",
    [
        (["date", "date", OUT, "time"], ["B-date", "I-date", "O", "B-time"]),
        # two adjacent slots of one type are one span (MASSIVE's behaviour)
        (["date", "date", "date"], ["B-date", "I-date", "I-date"]),
        (["date", "time", "date"], ["B-date", "B-time", "B-date"]),
        (["date", OUT, "date"], ["B-date", "O", "B-date"]),
        ([OUT, OUT, OUT], ["O", "O", "O"]),
        (["time", OUT, OUT, "place_name"], ["B-time", "O", "O", "B-place_name"]),
        ([], []),
    ],
)
def test_to_bio(labels, bio):
    assert to_bio(labels) == bio


def test_to_bio_custom_outside():
    assert to_bio(["none", "date", "none"], outside="none") == ["O", "B-date", "O"]


def test_align_prediction():
    assert align_prediction(["date"], 3) == ["date", OUT, OUT]
    assert align_prediction(["date", "time", "date"], 2) == ["date", "time"]
    assert align_prediction([], 2) == [OUT, OUT]
    assert align_prediction(("date",), 1) == ["date"]


# ---------------------------------------------------------------------------------------------------------------------
# slot_f1 and exact_match


def test_slot_f1_perfect():
    gold = [["date", "date", OUT, "time"], [OUT, "place_name"]]
    assert slot_f1(gold, gold) == 1.0


def test_slot_f1_all_other_is_zero_without_warnings():
    # No span anywhere: seqeval's F1 is undefined and it returns 0.0, which MASSIVE reports.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert slot_f1([[OUT, OUT], [OUT]], [[OUT, OUT], [OUT]]) == 0.0
        assert slot_f1([], []) == 0.0


def test_slot_f1_short_prediction_is_padded_with_other():
    # gold spans: date[0:2], time[2]; padded pred [date, date, OUT, OUT] finds date only: P=1, R=1/2
    assert slot_f1([["date", "date", "time", OUT]], [["date", "date"]]) == pytest.approx(2 / 3)


def test_slot_f1_long_prediction_is_truncated():
    # the extra predicted span beyond the gold length is dropped, so nothing is a false positive
    assert slot_f1([["date", OUT]], [["date", OUT, "time", "time"]]) == 1.0


def test_slot_f1_boundary_error_counts_as_wrong():
    # one predicted span date[0:1] against gold date[0:2]: no true positive
    assert slot_f1([["date", "date", OUT]], [["date", OUT, OUT]]) == 0.0


def test_slot_f1_micro_averages_over_utterances():
    gold = [["date", "date", "time", OUT], [OUT, "place_name", OUT]]
    pred = [["date", "date", OUT, OUT], ["time", "place_name", "time"]]
    # utterance 1: gold {date, time}, pred {date}; utterance 2: gold {place_name}, pred {time, place_name, time}
    # micro: TP=2, predicted=4, gold=3 -> P=1/2, R=2/3, F1=4/7 (the mean per-utterance F1 would be 7/12)
    assert slot_f1(gold, pred) == pytest.approx(4 / 7)


def test_slot_f1_matches_seqeval_on_handwritten_bio():
    gold = [["date", "date", OUT, "time"], [OUT, "place_name", "place_name"]]
    pred = [["date", OUT, OUT, "time"], [OUT, "place_name", "place_name", "date"]]
    gold_bio = [["B-date", "I-date", "O", "B-time"], ["O", "B-place_name", "I-place_name"]]
    pred_bio = [["B-date", "O", "O", "B-time"], ["O", "B-place_name", "I-place_name"]]
    assert slot_f1(gold, pred) == f1_score(gold_bio, pred_bio) == pytest.approx(2 / 3)


# The slot cases of MASSIVE's own test suite (alexa/massive test/test_eval_metrics.py), as (pred, gold, F1);
# upstream compares after rounding to 2 decimals, these are the exact values.
MASSIVE_CASES = [
    ([["X", "Y"]], [["X", "Y"]], 1.0),
    ([["X", "X", "Z"]], [["X", "X", "Y"]], 0.5),
    ([["X", "X", "Y", OUT]], [["X", "X", "Y", OUT, "Y"]], 0.8),
    ([["X", "X", "Z", "Z"]], [["X", "X", "Y"]], 0.5),
    ([["X", "X", OUT, "X", "X", "Y", "Z"]], [["X", "X", OUT, "X", "X", "Z", "Y"]], 0.5),
    ([["X", "X", "X", "Y", "Y"]], [["X", "X", OUT, "Y", "Y"]], 0.5),
    ([["X", OUT, OUT, "Y", "Y"]], [["X", "X", OUT, "Y", "Y"]], 0.5),
    ([[OUT], ["X"]], [["Y"], ["X"]], 2 / 3),
]


@pytest.mark.parametrize("pred, gold, expected", MASSIVE_CASES)
def test_slot_f1_massive_reference_cases(pred, gold, expected):
    assert slot_f1(gold, pred) == pytest.approx(expected)


def test_exact_match():
    gold = [["X", "X"], ["X", "X", "Y"], ["X"], ["X", "Z"], ["X", "X", OUT]]
    pred = [["X", "Y"], ["X", "X", "Y"], ["X", OUT], ["X", "Y"], ["X", "X", "X"]]
    # utterance 3 matches after truncation; MASSIVE's 0.25 on the first four also needs the intents
    assert exact_match(gold, pred) == pytest.approx(2 / 5)
    assert exact_match([["X", OUT, OUT]], [["X"]]) == 1.0
    assert exact_match([], []) == 0.0


def test_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 gold utterances but 1 predictions"):
        slot_f1([[OUT], [OUT]], [[OUT]])
    with pytest.raises(ValueError, match="2 gold utterances but 1 predictions"):
        exact_match([[OUT], [OUT]], [[OUT]])


# ---------------------------------------------------------------------------------------------------------------------
# Metric classes


def ragged_batches(seed: int = 0, n_batches: int = 4, batch_size: int = 6) -> list[tuple[list, list]]:
    """(pred, gold) batches of id lists: gold of 1-8 words, pred with ~30% relabelled words and a length off by
    up to two words, like a decoder's."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        preds, golds = [], []
        for _ in range(batch_size):
            n = int(torch.randint(1, 9, (1,), generator=g))
            gold = torch.randint(0, len(LABELS), (n,), generator=g)
            pred = gold.clone()
            flip = torch.rand(n, generator=g) < 0.3
            pred[flip] = torch.randint(0, len(LABELS), (int(flip.sum()),), generator=g)
            m = max(0, n + int(torch.randint(-2, 3, (1,), generator=g)))
            pred = torch.cat([pred, torch.randint(0, len(LABELS), (max(0, m - n),), generator=g)])[:m]
            preds.append(pred.tolist())
            golds.append(gold.tolist())
        batches.append((preds, golds))
    return batches


def padded(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), -100)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def expected_scores(batches: list[tuple[list, list]]) -> dict[str, float]:
    """The plain functions on all utterances at once, as float32 like the metrics return them."""
    pred = [[LABELS[i] for i in row] for preds, _ in batches for row in preds]
    gold = [[LABELS[i] for i in row] for _, golds in batches for row in golds]
    return {"f1": slot_f1(gold, pred), "em": exact_match(gold, pred)}


def assert_exact(value: torch.Tensor, expected: float) -> None:
    torch.testing.assert_close(value, torch.tensor(expected, dtype=torch.float32), rtol=0, atol=0)


def test_slot_metrics_over_ragged_batches_equal_the_functions():
    batches = ragged_batches()
    expected = expected_scores(batches)
    assert 0 < expected["f1"] < 1 and 0 < expected["em"] < 1  # the data exercises both outcomes
    f1, em = SlotF1(LABELS), SlotExactMatch(LABELS)
    for i, (preds, golds) in enumerate(batches):
        if i % 2:  # alternate the two accepted forms: id lists and -100-padded tensors
            preds, golds = padded(preds), padded(golds)
        f1.update(preds, golds)
        em.update(preds, golds)
    assert_exact(f1.compute(), expected["f1"])
    assert_exact(em.compute(), expected["em"])


def test_slot_metric_drops_interleaved_padding():
    # a token-level encoder masks non-first subwords with -100 in preds and target alike
    f1 = SlotF1(LABELS)
    f1.update(torch.tensor([[1, -100, 1, 0, 2, -100]]), torch.tensor([[1, -100, 1, 0, 3, -100]]))
    assert_exact(f1.compute(), slot_f1([["date", "date", OUT, "place_name"]], [["date", "date", OUT, "time"]]))


def test_slot_metric_reset_and_empty():
    f1 = SlotF1(LABELS)
    f1.update([[1, 1]], [[1, 1]])
    assert f1.compute().item() == 1.0
    f1.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns on compute before update
        assert f1.compute().item() == 0.0


def test_slot_metric_input_errors():
    with pytest.raises(ValueError, match="outside label 'Other' is missing"):
        SlotF1(("date", "time"))
    f1 = SlotF1(LABELS)
    with pytest.raises(ValueError, match="preds: label id 4 is outside"):
        f1.update([[4]], [[1]])
    with pytest.raises(ValueError, match="target: label id -1 is outside"):
        f1.update([[1]], [[-1]])
    with pytest.raises(ValueError, match="preds has 2 utterances but target has 1"):
        f1.update([[1], [1]], [[1]])
    with pytest.raises(ValueError, match="integer \\(batch, words\\) tensor"):
        f1.update(torch.tensor([1, 2]), [[1, 2]])


def test_slot_metrics_merged_like_ddp_sync_equal_single_process():
    # Two "ranks" with uneven, ragged shares; merging their "cat" states in rank order is what sync does.
    batches = ragged_batches(seed=1, n_batches=5)
    expected = expected_scores(batches)
    for cls, key in ((SlotF1, "f1"), (SlotExactMatch, "em")):
        rank0, rank1 = cls(LABELS), cls(LABELS)
        for preds, golds in batches[:3]:
            rank0.update(preds, golds)
        for preds, golds in batches[3:]:
            rank1.update(padded(preds), padded(golds))
        rank0.merge_state(rank1)
        assert_exact(rank0.compute(), expected[key])


def _ddp_worker(rank: int, world_size: int, init_file: str, results) -> None:
    """One rank of a real gloo group: uneven shares, then all data on rank 0 and none on rank 1."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    batches = ragged_batches(seed=2, n_batches=5)
    shares = {"uneven": batches[:3] if rank == 0 else batches[3:], "empty_rank": batches if rank == 0 else []}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compute before update on the empty rank
        for scenario, share in shares.items():
            f1, em, acc, invalid = SlotF1(LABELS), SlotExactMatch(LABELS), Accuracy(4), InvalidRate()
            for preds, golds in share:
                f1.update(preds, golds)
                em.update(padded(preds), padded(golds))
                first_pred = torch.tensor([row[0] if row else -1 for row in preds])
                acc.update(first_pred, torch.tensor([row[0] for row in golds]))
                invalid.update(first_pred < 0)
            out[scenario] = [m.compute().item() for m in (f1, em, acc, invalid)]
    results.put((rank, out))
    dist.destroy_process_group()


def _single_process_reference() -> list[float]:
    batches = ragged_batches(seed=2, n_batches=5)
    expected = expected_scores(batches)
    acc, invalid = Accuracy(4), InvalidRate()
    for preds, golds in batches:
        first_pred = torch.tensor([row[0] if row else -1 for row in preds])
        acc.update(first_pred, torch.tensor([row[0] for row in golds]))
        invalid.update(first_pred < 0)
    f32 = [torch.tensor(expected[k], dtype=torch.float32).item() for k in ("f1", "em")]
    return [*f32, acc.compute().item(), invalid.compute().item()]


@pytest.mark.slow  # spawns two processes
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_metrics_in_a_real_two_process_group_equal_single_process():
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_ddp_worker, args=(r, 2, f"{tmp}/init", results)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0]
    reference = _single_process_reference()
    assert reference[3] > 0  # some decoder outputs were empty, so the invalid path is exercised
    got = dict(results.get() for _ in procs)
    for rank in (0, 1):
        assert got[rank] == {"uneven": reference, "empty_rank": reference}


def test_accuracy_counts_invalid_as_wrong():
    acc = sequence_accuracy(3)
    assert isinstance(acc, Accuracy) and acc.num_classes == 3
    acc.update(torch.tensor([0, -1, 2, 1, -100]), torch.tensor([0, 1, 2, -100, 2]))
    # counted: positions 0, 1, 2, 4 (position 3's target is ignored); right: 0 and 2; -1 and -100 are wrong
    assert acc.compute().item() == pytest.approx(2 / 4)
    acc.update(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([1, 2]))  # scores are argmaxed
    assert acc.compute().item() == pytest.approx(3 / 6)


def test_accuracy_input_errors_and_empty():
    acc = Accuracy(3)
    with pytest.raises(ValueError, match="below num_classes=3"):
        acc.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match="target: class ids must be in"):
        acc.update(torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(ValueError, match="do not match target"):
        acc.update(torch.tensor([0, 1]), torch.tensor([0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert acc.compute().item() == 0.0
    unchecked = Accuracy()  # without num_classes nothing is range-checked; -1 still counts as wrong
    unchecked.update(torch.tensor([7, -1]), torch.tensor([7, 0]))
    assert unchecked.compute().item() == 0.5


def test_invalid_rate():
    rate = InvalidRate()
    rate.update(torch.tensor([True, False, False, True]))
    rate.update(torch.tensor([False]))
    assert rate.compute().item() == pytest.approx(2 / 5)


def test_bio_scheme_scores_the_tags_as_conlleval_does():
    from lit_clf.metrics import slot_f1

    gold = [["B-person", "I-person", "O", "B-location"], ["O", "B-group"]]
    # one of two entities found in the first sentence, the second sentence's entity found
    pred = [["B-person", "I-person", "O", "O"], ["O", "B-group"]]
    assert slot_f1(gold, pred, "O", "bio") == pytest.approx(2 * (2 / 2) * (2 / 3) / (1 + 2 / 3))
    # an entity opened by I- counts as it does in conlleval: the same entity as B-person I-person
    assert slot_f1(gold, [["I-person", "I-person", "O", "B-location"], ["O", "B-group"]], "O", "bio") == 1.0
    # a wrong type is a miss and a false positive; predictions shorter than the sentence are padded with O
    assert slot_f1([["B-person", "I-person"]], [["B-location"]], "O", "bio") == 0.0
    # the runs scheme would read B-person and I-person as two labels: two spans, none matching
    assert slot_f1([["B-person", "I-person"]], [["B-person", "I-person"]], "O", "runs") == 1.0
    assert slot_f1([["B-person", "I-person"]], [["B-person", "B-person"]], "O", "bio") == 0.0


def test_task_specs_carry_their_scheme_and_outside_label():
    from lit_clf.data.tasks import TaskSpec
    from lit_clf.metrics import SlotF1, task_metrics

    ner = TaskSpec("ner", "token", ("O", "B-person", "I-person"), "bio")
    assert ner.outside == "O" and TaskSpec("slots", "token", ("Other", "time")).outside == "Other"
    assert TaskSpec.coerce(ner.to_dict()) == ner
    assert TaskSpec.coerce({"name": "slots", "kind": "token", "labels": ["Other"]}).scheme == "runs"  # old checkpoints
    metric = task_metrics([ner])["ner"]["f1"]
    assert isinstance(metric, SlotF1) and (metric.outside, metric.scheme) == ("O", "bio")
    metric.update([[1, 2, 0]], [[1, 2, 0]])
    assert float(metric.compute()) == 1.0
    with pytest.raises(ValueError, match="scheme must be 'runs' or 'bio'"):
        TaskSpec("ner", "token", ("O",), "iob")


def test_multilabel_metrics_by_hand():
    from lit_clf.data.tasks import TaskSpec
    from lit_clf.metrics import task_metrics

    metrics = task_metrics([TaskSpec("genres", "multilabel", ("a", "b", "c"))])["genres"]
    preds = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    gold = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    for metric in metrics.values():
        metric.update(preds, gold)
    # micro: tp 2 (a in row 0, b in row 1), fp 1 (c in row 0), fn 1 (c in row 2): F1 = 4 / (4 + 1 + 1)
    assert float(metrics["f1"].compute()) == pytest.approx(4 / 6)
    # macro: a 1.0, b 1.0, c: tp 0, fp 1, fn 1 -> 0.0
    assert float(metrics["macro_f1"].compute()) == pytest.approx(2 / 3)
    assert float(metrics["exact_match"].compute()) == pytest.approx(1 / 3)  # only row 1


def test_an_invalid_slot_answer_is_never_an_exact_match():
    """Garbage on an utterance without slots pads to all-Other, which equals its gold labels: a 100 %-invalid run
    would score exact matches. Slot F1 keeps MASSIVE's best-effort padding (nothing to find, nothing found)."""
    from lit_clf.metrics import task_metrics
    from lit_clf.prompting.answers import ParsedAnswer
    from lit_clf.prompting.scoring import update_answer_metrics
    from tests.helpers import toy_specs

    (slots,) = toy_specs(("slots",))
    metrics = task_metrics([slots], invalid_rate=True)
    other = slots.label2id[OTHER]
    gold = {"slots": [[other, other, other], [other, other]]}
    answers = [{"slots": ParsedAnswer([], False)}, {"slots": ParsedAnswer([OTHER, OTHER], True)}]
    update_answer_metrics(metrics, [slots], answers, gold)
    assert float(metrics["slots"]["exact_match"].compute()) == 0.5  # the valid all-Other answer only
    assert float(metrics["slots"]["invalid_rate"].compute()) == 0.5
    assert exact_match([[OTHER]], [[]], valid=[False]) == 0.0 and exact_match([[OTHER]], [[]]) == 1.0


def test_ece_and_brier_equal_hand_computed_values():
    from lit_clf.metrics import BrierScore, CalibrationError

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.08, 0.62, 0.30], [0.2, 0.2, 0.6]])
    target = torch.tensor([0, 2, -100])  # the third row is unlabelled: skipped
    brier, ece = BrierScore(3), CalibrationError(3)
    brier.update(probs, target)
    ece.update(probs, target)
    # Brier: ((0.3^2 + 0.2^2 + 0.1^2) + (0.08^2 + 0.62^2 + 0.7^2)) / 2
    assert float(brier.compute()) == pytest.approx((0.14 + 0.8808) / 2, abs=1e-6)
    # ECE: two bins of one example each: |1 - 0.7| / 2 (right) + |0 - 0.62| / 2 (wrong)
    assert float(ece.compute()) == pytest.approx(0.15 + 0.31, abs=1e-6)


def test_families_with_label_probabilities_get_calibration_metrics():
    from lit_clf.metrics import task_metrics
    from tests.helpers import toy_specs

    specs = toy_specs(("intent", "slots"))
    assert set(task_metrics(specs, calibration=True)["intent"]) == {"acc", "ece", "brier"}
    assert set(task_metrics(specs)["intent"]) == {"acc"} and "ece" not in task_metrics(specs, calibration=True)["slots"]
