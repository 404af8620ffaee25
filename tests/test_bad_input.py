"""Bad input, class by class (issue: reliability): each case's exit code, its one-line message naming the
file/option and what to do, no traceback, and nothing written or deleted that should not be."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from lit_clf.data.tasks import Example
from tests.helpers import REPO, ToyDataModule, run_cli, run_cli_error, toy_examples

UNZIP = "PytorchStreamReader failed reading zip archive: failed finding central directory"
ENCODER_CONFIG = str(REPO / "configs" / "massive" / "minilm-intent.yaml")


class RenamedIntentData(ToyDataModule):
    """The toy data with one intent renamed: a label the toy checkpoint's model never saw."""

    def load_splits(self):
        rename = {"alarm_set": "alarm_create"}
        return {
            split: [
                Example(ex.id, ex.text, {**ex.labels, "intent": rename.get(ex.labels["intent"], ex.labels["intent"])})
                for ex in toy_examples(f"{split}-")
            ]
            for split in ("train", "val", "test")
        }


class FewerIntentsData(ToyDataModule):
    """The toy data without its alarm utterances: fewer labels than the checkpoint knows (still scoreable)."""

    def load_splits(self):
        keep = [ex for ex in toy_examples() if ex.labels["intent"] != "alarm_set"]
        return {split: keep for split in ("train", "val", "test")}


def toy_args(tmp_path, tiny_roberta_dir, data="tests.helpers.ToyDataModule") -> list[str]:
    return [
        f"--config={ENCODER_CONFIG}",
        f"--allow_class_path={data.rpartition('.')[0]}",  # the test's own toy DataModule
        f"--model.init_args.backbone={tiny_roberta_dir}",
        "--model.init_args.pretrained=false",
        f"--data={data}",
        "--data.init_args.tasks=[intent]",
        "--data.init_args.batch_size=4",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
    ]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory, tiny_roberta_dir):
    """A tiny encoder fitted on the toy intents: (its best checkpoint, the run folder)."""
    root = tmp_path_factory.mktemp("fit")
    run_cli(["fit", *toy_args(root, tiny_roberta_dir), "--test_after_fit=false"])
    (best,) = root.rglob("best.ckpt")
    return best, root


# ------------------------------------------------------------------- 4, 5: checkpoints and their options
def test_evaluation_options_given_with_a_checkpoint_apply(toy_checkpoint, tiny_roberta_dir, tmp_path):
    ckpt, _ = toy_checkpoint
    out = tmp_path / "predictions.jsonl"
    args = [*toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={ckpt}", f"--predictions.output_path={out}"]
    run_cli(["predict", *args, "--model.init_args.top_k=1"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {len(row["intent"]["top"]) for row in rows} == {1}  # not the checkpoint's top_k=3
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["model"]["init_args"]["top_k"] == 1  # the saved config says so too


def test_a_checkpoint_of_another_model_class_is_refused(
    toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    ckpt, _ = toy_checkpoint
    args = ["test", *toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={ckpt}"]
    args[1] = f"--config={REPO / 'configs' / 'massive' / 'smollm2-135m-intent.yaml'}"
    line = run_cli_error(args, capsys, monkeypatch)
    assert line == (
        f"lit-clf: error: ckpt_path: {ckpt} holds a lit_clf.encoder.EncoderSeqTokenModule but the config's "
        "model is a lit_clf.decoder.DecoderGenerativeModule; give the config the checkpoint was trained with"
    )
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "no such file"),
        ("empty", "empty file (an interrupted save?)"),
        ("truncated", f"not a readable checkpoint ({UNZIP})"),
        ("text", "not a readable checkpoint (damaged, or not a PyTorch checkpoint)"),
        (
            "pickle",
            "not a readable checkpoint (it holds Python objects beyond tensors and plain data, refused "
            "(weights_only=True))",
        ),
    ],
)
def test_unreadable_checkpoints_are_one_line_errors(
    damage, reason, toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    ckpt, _ = toy_checkpoint
    bad = tmp_path / "bad.ckpt"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "text":
        bad.write_text("not a checkpoint\n")
    elif damage == "pickle":  # a class: code that would be imported on load
        torch.save({"state_dict": {}, "hook": Example}, bad)
    args = ["test", *toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={bad}"]
    assert run_cli_error(args, capsys, monkeypatch) == f"lit-clf: error: ckpt_path: {bad}: {reason}"
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_with_non_finite_weights_is_refused(
    toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    ckpt, _ = toy_checkpoint
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    name = next(key for key in checkpoint["state_dict"] if key.endswith("weight"))
    checkpoint["state_dict"][name][0] = float("nan")
    bad = tmp_path / "nan.ckpt"
    torch.save(checkpoint, bad)
    args = ["test", *toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={bad}"]
    assert run_cli_error(args, capsys, monkeypatch) == (
        f"lit-clf: error: ckpt_path: {bad}: weight {name!r} has NaN or infinite values (a damaged file, or a run that "
        "diverged before this checkpoint); use another checkpoint (LIT_CLF_TRACEBACK=1 shows where)"
    )


def test_finite_damage_inside_a_checkpoint_is_found_by_its_fingerprint(
    toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    """4 kB of zeros in the embeddings: finite values, loadable, wrong; the sums saved with the weights differ."""
    ckpt, _ = toy_checkpoint
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert checkpoint["weights_fingerprint"]
    name = next(key for key in checkpoint["state_dict"] if "embeddings.word_embeddings" in key)
    checkpoint["state_dict"][name].view(-1)[:1024] = 0.0  # 1,024 float32 values
    bad = tmp_path / "zeros.ckpt"
    torch.save(checkpoint, bad)
    args = ["test", *toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={bad}"]
    assert run_cli_error(args, capsys, monkeypatch) == (
        f"lit-clf: error: ckpt_path: {bad}: weight {name!r} does not match the fingerprint saved with it (the file "
        "was damaged after it was written); use another checkpoint (LIT_CLF_TRACEBACK=1 shows where)"
    )
    run_cli(["test", *toy_args(tmp_path / "fine", tiny_roberta_dir), f"--ckpt_path={ckpt}"])  # the intact one tests


def test_data_with_a_label_the_checkpoint_does_not_know_is_refused(
    toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    ckpt, _ = toy_checkpoint
    data = f"{__name__}.RenamedIntentData"
    args = ["test", *toy_args(tmp_path, tiny_roberta_dir, data), f"--ckpt_path={ckpt}"]
    assert run_cli_error(args, capsys, monkeypatch) == (
        f"lit-clf: error: ckpt_path: {ckpt}: task 'intent': the data has 1 label(s) the checkpoint's model does not "
        "know ('alarm_create'); it was trained on 6 labels. Use data with the checkpoint's label set, or fine-tune on "
        "this data"
    )


def test_data_with_fewer_labels_is_scored_with_the_checkpoints_label_ids(toy_checkpoint, tiny_roberta_dir, tmp_path):
    ckpt, _ = toy_checkpoint
    out = tmp_path / "predictions.jsonl"
    data = f"{__name__}.FewerIntentsData"
    args = [*toy_args(tmp_path, tiny_roberta_dir, data), f"--ckpt_path={ckpt}", f"--predictions.output_path={out}"]
    run_cli(["predict", *args])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    trained = torch.load(ckpt, map_location="cpu", weights_only=True)["id2label"]["intent"]
    assert len(trained) == 6 and "alarm_set" in trained
    # the model's labels are the checkpoint's six, in its order: a prediction may still name the missing one
    assert all(row["intent"]["pred"] in trained for row in rows)
    assert all(pred in trained for row in rows for pred, _ in row["intent"]["top"])


# ------------------------------------------------------------------------- 2, 6, 7: runs and their folders
def test_a_monitor_the_run_never_logs_is_refused_before_training(tiny_roberta_dir, tmp_path, capsys, monkeypatch):
    args = ["fit", *toy_args(tmp_path, tiny_roberta_dir), "--checkpoint.monitor=val/accuracy"]
    assert run_cli_error(args, capsys, monkeypatch) == (
        "lit-clf: error: checkpoint.monitor: this run never logs 'val/accuracy'; validation logs val/intent_acc, "
        "val/intent_brier, val/intent_ece, val/loss (LIT_CLF_TRACEBACK=1 shows where)"
    )
    assert not list(tmp_path.rglob("*.ckpt"))


def test_last_without_a_checkpoint_of_the_run_is_refused(tiny_roberta_dir, tmp_path, capsys, monkeypatch):
    args = ["fit", *toy_args(tmp_path, tiny_roberta_dir), "--ckpt_path=last"]
    folder = tmp_path / "runs" / f"massive-{tiny_roberta_dir.name}-intent-ft"
    assert run_cli_error(args, capsys, monkeypatch) == (
        f"lit-clf: error: ckpt_path last: no checkpoint of this run at {folder}/version_*/checkpoints/last.ckpt "
        "(checkpoint.save_last writes one); give the checkpoint file, or start without --ckpt_path"
    )


def test_a_second_run_in_the_same_folder_is_refused_and_the_first_kept(tiny_roberta_dir, tmp_path, capsys, monkeypatch):
    args = ["fit", *toy_args(tmp_path, tiny_roberta_dir), "--trainer.logger=false", "--test_after_fit=false"]
    run_cli(args)
    config = tmp_path / "config.yaml"
    before = config.read_text()
    line = run_cli_error([*args, "--trainer.max_epochs=2"], capsys, monkeypatch)
    assert line == (
        f"lit-clf: error: {tmp_path}: holds a previous run (config.yaml, checkpoints/best.ckpt, "
        "checkpoints/last.ckpt); give this run another folder "
        "(--trainer.default_root_dir, --trainer.logger.init_args.version), resume that run with --ckpt_path last, "
        "or replace it with --overwrite_run true"
    )
    assert config.read_text() == before  # the first run's config is intact
    first_best = (tmp_path / "checkpoints" / "best.ckpt").read_bytes()
    run_cli([*args, "--trainer.max_epochs=2", "--overwrite_run=true"])
    assert "max_epochs: 2" in config.read_text()
    # the replaced run's checkpoints are set aside whole: checkpoints/best.ckpt is this run's, no best-v1.ckpt
    (aside,) = tmp_path.glob("checkpoints.replaced-*")
    assert (aside / "best.ckpt").read_bytes() == first_best
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_run_that_failed_in_setup_leaves_nothing_that_refuses_the_next(tiny_roberta_dir, tmp_path):
    args = ["fit", *toy_args(tmp_path, tiny_roberta_dir), "--trainer.logger=false", "--test_after_fit=false"]
    (tmp_path / "config.yaml").write_text("# what a run that stopped in setup wrote\n")
    run_cli(args)  # not "a previous run": no metrics, no checkpoint
    assert list((tmp_path / "checkpoints").glob("best.ckpt"))


def test_a_text_file_named_ckpt_is_one_line(tmp_path, capsys, monkeypatch, tiny_roberta_dir):
    fake = tmp_path / "model.ckpt"
    fake.write_text("epoch 3, accuracy 0.9\n")
    line = run_cli_error(["test", *toy_args(tmp_path, tiny_roberta_dir), f"--ckpt_path={fake}"], capsys, monkeypatch)
    assert (
        line == f"lit-clf: error: ckpt_path: {fake}: not a readable checkpoint (damaged, or not a PyTorch checkpoint)"
    )


def test_resuming_from_a_weights_only_checkpoint_is_one_line(tiny_roberta_dir, tmp_path, capsys, monkeypatch):
    args = ["fit", *toy_args(tmp_path, tiny_roberta_dir), "--test_after_fit=false", "--checkpoint.save_last=true"]
    run_cli([*args, "--checkpoint.save_weights_only=true"])
    line = run_cli_error([*args, "--ckpt_path=last"], capsys, monkeypatch)
    assert line.startswith("lit-clf: error: ckpt_path: ") and line.endswith(
        "last.ckpt holds the weights only (saved with save_weights_only): a fit cannot resume from it; test it with "
        "`lit-clf test --ckpt_path`, or fit afresh without --ckpt_path"
    )


def test_ckpt_path_last_resumes_the_version_named(tiny_roberta_dir, tmp_path):
    from jsonargparse import Namespace

    from lit_clf.run.resume import find_last_checkpoint

    runs = tmp_path / "runs" / "r"
    for version in (0, 1):
        (runs / f"version_{version}" / "checkpoints").mkdir(parents=True)
        (runs / f"version_{version}" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    logger = Namespace(
        class_path="lightning.pytorch.loggers.CSVLogger",
        init_args=Namespace(save_dir=str(tmp_path / "runs"), name="r", version=None),
    )
    config = Namespace(checkpoint=Namespace(dirpath=None), trainer=Namespace(logger=logger, default_root_dir=None))
    assert find_last_checkpoint(config) == (runs / "version_1" / "checkpoints" / "last.ckpt", 1)
    logger.init_args.version = 0
    assert find_last_checkpoint(config) == (runs / "version_0" / "checkpoints" / "last.ckpt", 0)
    logger.init_args.version = "version_0"
    assert find_last_checkpoint(config)[1] == 0


def test_a_reused_csv_version_is_refused_before_its_metrics_are_touched(
    toy_checkpoint, tiny_roberta_dir, tmp_path, capsys, monkeypatch
):
    _, root = toy_checkpoint
    (metrics,) = root.rglob("metrics.csv")
    before = metrics.read_text()
    args = ["fit", *toy_args(root, tiny_roberta_dir), "--trainer.logger.init_args.version=0"]
    assert "holds a previous run (config.yaml, metrics.csv, checkpoints/" in run_cli_error(args, capsys, monkeypatch)
    assert metrics.read_text() == before


# ------------------------------------------------------------------- 3: corrupt or incomplete known datasets
FIX = "repair or download the data again, or set data.init_args.verify false to use it as it is"


def _massive_copy(tmp_path, shared_data, edit):
    folder = tmp_path / "massive"
    folder.mkdir()
    lines = (shared_data / "massive" / "en-US.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "en-US.jsonl").write_text("".join(edit(lines)), encoding="utf-8")
    return folder / "en-US.jsonl"


def test_a_partial_massive_copy_is_refused_unless_verify_is_off(tmp_path, shared_data, capsys, monkeypatch):
    path = _massive_copy(
        tmp_path, shared_data, lambda lines: [ln for ln in lines if '"partition": "test"' not in ln or hash(ln) % 30]
    )
    from lit_clf.data import MassiveDataModule

    data = MassiveDataModule(tasks=["intent"], data_dir=str(tmp_path))
    with pytest.raises(ValueError) as err:
        data.examples("test")
    found = len([ln for ln in path.read_text().splitlines() if '"partition": "test"' in ln])
    assert str(err.value) == (
        f"{path}: test has {found:,} examples, a complete copy 2,974 (damaged or partial data); {FIX}"
    )
    assert len(MassiveDataModule(tasks=["intent"], data_dir=str(tmp_path), verify=False).examples("test")) == found
    args = ["fit", f"--config={ENCODER_CONFIG}", f"--data.init_args.data_dir={tmp_path}"]
    assert run_cli_error(args, capsys, monkeypatch) == f"lit-clf: error: {err.value}"


def test_a_massive_copy_missing_an_intent_is_refused(tmp_path, shared_data):
    path = _massive_copy(
        tmp_path,
        shared_data,
        lambda lines: [ln.replace('"intent": "cooking_query"', '"intent": "cooking_recipe"') for ln in lines],
    )
    from lit_clf.data import MassiveDataModule

    with pytest.raises(ValueError) as err:
        MassiveDataModule(tasks=["intent"], data_dir=str(tmp_path)).examples("train")
    assert str(err.value) == (
        f"{path}: train has 59 intent labels, a complete copy 60 (damaged or partial data); {FIX}"
    )


def test_a_newsgroups_archive_missing_a_group_is_refused(tmp_path, shared_data):
    import tarfile

    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    archive = folder / "20news-bydate.tar.gz"
    with (
        tarfile.open(shared_data / "20newsgroups" / "20news-bydate.tar.gz", "r|*") as src,
        tarfile.open(archive, "w") as dst,
    ):  # uncompressed: quicker to write; the reader detects the compression
        for member in src:
            if "20news-bydate-test/sci.space/" not in member.name:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    from lit_clf.data import NewsgroupsDataModule

    with pytest.raises(ValueError) as err:
        NewsgroupsDataModule(tasks=["topic20"], data_dir=str(tmp_path)).examples("train")
    assert str(err.value) == (
        f"{archive}: test has 7,138 examples, a complete copy 7,532 (damaged or partial data); {FIX}"
    )


@pytest.mark.parametrize("damage", ["zeroed bytes", "16 zero bytes at 5 MB", "truncated"])
def test_a_damaged_newsgroups_archive_is_an_error_naming_it(damage, tmp_path, shared_data):
    """Every damage reads as a corrupt archive (the gzip CRC is checked to the end): zeroed bytes used to end the tar
    stream silently, reported as a missing split or a partial dataset."""
    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    data = bytearray((shared_data / "20newsgroups" / "20news-bydate.tar.gz").read_bytes())
    middle = len(data) // 2
    if damage == "truncated":
        del data[middle:]
    elif damage == "zeroed bytes":
        data[middle : middle + 64] = bytes(64)
    else:
        data[5_000_000:5_000_016] = bytes(16)
    (folder / "20news-bydate.tar.gz").write_bytes(bytes(data))
    from lit_clf.data import NewsgroupsDataModule

    with pytest.raises(ValueError) as err:
        NewsgroupsDataModule(tasks=["topic20"], data_dir=str(tmp_path)).examples("train")
    archive = folder / "20news-bydate.tar.gz"
    assert str(err.value).startswith(f"{archive} is truncated or corrupt (")
    assert str(err.value).endswith("); delete it to download it again, or replace it")


def test_a_folder_where_a_data_file_belongs_is_named_not_downloaded_over(tmp_path, monkeypatch):
    from lit_clf.data import MassiveDataModule, NewsgroupsDataModule, download

    monkeypatch.setattr(download, "_download", lambda *a, **k: pytest.fail("downloaded over a wrong-kind path"))
    (tmp_path / "massive" / "1.1" / "data" / "en-US.jsonl").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"en-US\.jsonl: a folder where a data file belongs; move or delete it"):
        MassiveDataModule(tasks=["intent"], data_dir=str(tmp_path)).examples("train")
    (tmp_path / "20newsgroups" / "20news-bydate.tar.gz").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"20news-bydate\.tar\.gz: a folder where a data file belongs"):
        NewsgroupsDataModule(tasks=["topic20"], data_dir=str(tmp_path)).examples("train")


# ------------------------------------------------------------------------------ 1, 2: options found wrong late
DECODER_CONFIG = str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml")


def decoder_args(tmp_path, tiny_smollm_dir, shared_data) -> list[str]:
    from tests.helpers import decoder_overrides

    return ["fit", f"--config={DECODER_CONFIG}", *decoder_overrides(tmp_path, tiny_smollm_dir, shared_data)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--model.init_args.max_length=64"],
            "max_length=64 cannot hold example '636': the prompt without its texts takes 465 tokens and the answer "
            "needs 5; raise model.init_args.max_length (to 470 at the very least) (LIT_CLF_TRACEBACK=1 shows where)",
        ),
        (
            ["--model.init_args.shots=5", "--data.init_args.max_examples=3"],
            "shots=5: the few-shot pool has 3 training examples; it needs more than shots: use fewer shots or more "
            "training examples (in code, pass the DataModule's `info`) (LIT_CLF_TRACEBACK=1 shows where)",
        ),
        (
            ["--model.init_args.prompt_file=missing.yaml"],
            "prompt_file: missing.yaml: cannot read the prompt template (No such file or directory)",
        ),
        (["--model.init_args.prompt_file=bad.yaml"], "bad.yaml"),
    ],
    ids=["max_length", "shots", "prompt_file-missing", "prompt_file-bad"],
)
def test_decoder_options_the_data_cannot_meet_are_one_line_errors(
    options, message, tmp_path, tiny_smollm_dir, shared_data, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("prompt: [unclosed\n")
    line = run_cli_error([*decoder_args(tmp_path, tiny_smollm_dir, shared_data), *options], capsys, monkeypatch)
    assert line == f"lit-clf: error: {message}" if message.endswith(")") else message in line
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_local_model_folder_that_does_not_exist_is_named(tmp_path, shared_data, capsys, monkeypatch):
    args = ["fit", f"--config={ENCODER_CONFIG}", f"--model.init_args.backbone={tmp_path / 'no-such-model'}"]
    args.append(f"--data.init_args.data_dir={shared_data}")
    assert run_cli_error(args, capsys, monkeypatch) == (
        f"lit-clf: error: model.init_args.backbone: {tmp_path / 'no-such-model'}: no such folder; give a local model "
        "folder (with config.json) or a hub id ('name' or 'namespace/name')"
    )


def test_a_mistyped_data_dir_leaves_no_folders_behind(tmp_path, capsys, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    typo = tmp_path / "dtaa"
    args = ["fit", f"--config={ENCODER_CONFIG}", f"--data.init_args.data_dir={typo}"]
    line = run_cli_error(args, capsys, monkeypatch)
    assert line.startswith(f"lit-clf: error: MASSIVE en-US not found (looked for: {typo}/massive/en-US.jsonl")
    assert "could not download" in line and "--data.init_args.data_dir" in line
    assert not typo.exists()


def test_a_run_resumed_after_the_project_folder_moved_keeps_its_metrics(tiny_roberta_dir, tmp_path):
    """The rows a checkpoint recorded are matched by the run's own folder (<run name>/version_N), not the absolute
    path, so a project moved or copied elsewhere resumes with its metrics history."""
    import csv
    import shutil

    first = tmp_path / "first"
    args = ["--test_after_fit=false", "--checkpoint.save_last=true", "--trainer.log_every_n_steps=1"]
    run_cli(["fit", *toy_args(first, tiny_roberta_dir), *args])
    (metrics,) = first.rglob("metrics.csv")
    before = list(csv.DictReader(metrics.open()))
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    run_cli(["fit", *toy_args(moved, tiny_roberta_dir), *args, "--ckpt_path=last", "--trainer.max_epochs=2"])
    (metrics,) = moved.rglob("metrics.csv")
    after = list(csv.DictReader(metrics.open()))
    epoch0 = [r for r in before if r["epoch"] == "0"]  # the training rows before the last checkpoint
    assert epoch0 and after[: len(epoch0)] == epoch0  # kept as they were (else the file restarts at epoch 1)
    assert any(r["epoch"] == "1" for r in after)


def test_a_checkpoint_replacing_config_options_says_which_and_follows_a_moved_model(
    tiny_roberta_dir, tmp_path, recwarn
):
    import shutil

    backbone = tmp_path / "model-here"
    shutil.copytree(tiny_roberta_dir, backbone)
    run_cli(["fit", *toy_args(tmp_path / "fit", backbone), "--test_after_fit=false"])
    (ckpt,) = (tmp_path / "fit").rglob("best.ckpt")
    moved = tmp_path / "model-moved"
    backbone.rename(moved)  # the model folder moved after training: the config's backbone points at it
    args = [*toy_args(tmp_path / "test", moved), f"--ckpt_path={ckpt}", "--model.init_args.dropout=0.3"]
    run_cli(["test", *args])
    messages = [str(w.message) for w in recwarn if "ckpt_path: the checkpoint's values" in str(w.message)]
    assert messages == [
        "ckpt_path: the checkpoint's values replace the config's for dropout (0.1, not 0.3): only evaluation "
        "options (max_length, top_k, compile, multilabel_threshold, backbone) keep the config's"
    ]


def test_a_fit_from_another_runs_checkpoint_is_a_run_of_its_own(tiny_roberta_dir, tmp_path):
    """Starting a fit from another run's last.ckpt: this run's folder, config and best.ckpt are its own, and
    --test_after_fit tests this run's best checkpoint, not a file of the other run (deleted here)."""
    import csv

    args = ["--checkpoint.save_last=true", "--test_after_fit=true"]
    run_cli(["fit", *toy_args(tmp_path / "a", tiny_roberta_dir), *args])
    (last,) = (tmp_path / "a").rglob("last.ckpt")
    (other_best,) = (tmp_path / "a").rglob("best.ckpt")
    other_best.unlink()
    run_cli(
        ["fit", *toy_args(tmp_path / "b", tiny_roberta_dir), *args, f"--ckpt_path={last}", "--trainer.max_epochs=2"]
    )
    (best,) = (tmp_path / "b").rglob("best.ckpt")
    (metrics,) = (tmp_path / "b").rglob("metrics.csv")
    assert any(row.get("test/intent_acc") for row in csv.DictReader(metrics.open()))
    assert not other_best.exists() and best.parent.parent == metrics.parent
