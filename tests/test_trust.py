"""Nothing a checkpoint, a config file or the command line names is run unless lit_clf trusts it (issue: security).

Each crafted input names a callable that would create a marker file if it ran; none may run, each is one
``lit-clf: error:`` line naming the key and the class path (exit 2), and nothing is written in the run folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback

from lit_clf import trust
from lit_clf.compat import jsonargparse_settings
from lit_clf.trust import UntrustedCode, allowed_on_command_line, check_class_path, check_config, enforced
from tests.helpers import REPO, decoder_overrides, run_cli, run_cli_error

ENCODER_CONFIG = str(REPO / "configs" / "massive" / "minilm-intent.yaml")
DECODER_CONFIG = str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml")
MARKER_MODULE = "lit_clf_test_marker_module"  # written by the marker fixture: importing it creates the marker

#: The callables of the issue, and the init_args with which each would create the marker.
CALLABLES = {
    "os.system": lambda m: {"command": f"touch {m}"},
    "builtins.exec": lambda m: {"source": f"open({str(m)!r}, 'w').close()"},
    "builtins.eval": lambda m: {"source": f"open({str(m)!r}, 'w').close()"},
    "subprocess.call": lambda m: {"args": ["touch", str(m)]},
    "importlib.import_module": lambda m: {"name": MARKER_MODULE},
    "operator.methodcaller": lambda m: {"name": "system", "args": [f"touch {m}"]},
    "functools.partial": lambda m: {"func": "os.system", "args": [f"touch {m}"]},
}
#: Where a class path can sit: the model's optimizer, its scheduler, a callback, the model class itself.
PLACES = ("optimizer", "lr_scheduler", "callback", "model")
CHECKPOINT_KEYS = {
    "optimizer": "model.init_args.optimizer",
    "lr_scheduler": "model.init_args.lr_scheduler",
    "callback": "model.init_args.callbacks[0]",
    "model": "model.class_path",
}
CONFIG_KEYS = {
    "optimizer": "model.init_args.optimizer",
    "lr_scheduler": "model.init_args.lr_scheduler",
    "callback": "trainer.callbacks",
    "model": "model",
}


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """The file a payload would create; also a module on sys.path that creates it when imported."""
    path = tmp_path / "PWNED"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{MARKER_MODULE}.py").write_text(f"open({str(path)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(modules))
    yield path
    assert not path.exists(), "a crafted input ran code"


def encoder_args(root: Path, tiny_bert_dir: Path, shared_data: Path) -> list[str]:
    """The issue's command: the MASSIVE intent config with a tiny BERT and 16 examples."""
    return [
        f"--config={ENCODER_CONFIG}",
        f"--model.init_args.backbone={tiny_bert_dir}",
        "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={shared_data}",
        "--data.init_args.max_examples=16",
        "--data.init_args.max_train_examples=null",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
    ]


@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory, tiny_bert_dir, shared_data) -> Path:
    root = tmp_path_factory.mktemp("encoder-fit")
    run_cli(["fit", *encoder_args(root, tiny_bert_dir, shared_data), "--test_after_fit=false"])
    (best,) = root.rglob("best.ckpt")
    return best


def crafted(source: Path, dest: Path, place: str, path: str, init_args: dict) -> Path:
    """A copy of the checkpoint at ``source`` whose hyperparameters name ``path`` at ``place``."""
    checkpoint = torch.load(source, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    spec = {"class_path": path, "init_args": init_args}
    if place == "model":
        hparams["_class_path"] = path
    elif place == "callback":
        hparams["callbacks"] = [spec]
    else:
        hparams[place] = spec
    torch.save(checkpoint, dest)
    return dest


def assert_refused(line: str, key: str, path: str) -> None:
    assert f"{key}: class path '{path}' is not trusted" in line, line
    assert "--allow_class_path" in line


def written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("path", CALLABLES)
def test_a_crafted_checkpoint_runs_nothing(
    path, place, marker, encoder_checkpoint, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch
):
    ckpt = crafted(encoder_checkpoint, tmp_path / "crafted.ckpt", place, path, CALLABLES[path](marker))
    root = tmp_path / "run"
    line = run_cli_error(
        ["test", *encoder_args(root, tiny_bert_dir, shared_data), f"--ckpt_path={ckpt}"], capsys, monkeypatch
    )
    assert line.startswith(f"lit-clf: error: ckpt_path: {ckpt}: ")
    assert_refused(line, CHECKPOINT_KEYS[place], path)
    assert not written(root)


def config_naming(tmp_path: Path, place: str, path: str, init_args: dict) -> Path:
    spec = {"class_path": path, "init_args": init_args}
    if place == "model":
        data = {"model": spec}
    elif place == "callback":
        data = {"trainer": {"callbacks": [spec]}}
    else:
        data = {"model": {"init_args": {place: spec}}}
    file = tmp_path / "crafted.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("path", CALLABLES)
def test_a_crafted_config_file_runs_nothing(
    path, place, marker, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch
):
    file = config_naming(tmp_path, place, path, CALLABLES[path](marker))
    root = tmp_path / "run"
    line = run_cli_error(
        ["test", *encoder_args(root, tiny_bert_dir, shared_data), f"--config={file}"], capsys, monkeypatch
    )
    assert_refused(line, CONFIG_KEYS[place], path)
    assert not written(root)


@pytest.mark.parametrize("path", CALLABLES)
def test_a_class_path_on_the_command_line_runs_nothing(
    path, marker, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch
):
    spec = json.dumps({"class_path": path, "init_args": CALLABLES[path](marker)})
    root = tmp_path / "run"
    for option, key in (
        ("--model.init_args.optimizer", "model.init_args.optimizer"),
        ("--trainer.callbacks+", "trainer.callbacks"),
    ):
        line = run_cli_error(
            ["fit", *encoder_args(root, tiny_bert_dir, shared_data), f"{option}={spec}"], capsys, monkeypatch
        )
        assert_refused(line, key, path)
    line = run_cli_error(
        ["fit", *encoder_args(root, tiny_bert_dir, shared_data), f"--model.init_args.optimizer={path}"],
        capsys,
        monkeypatch,
    )
    assert_refused(line, "model.init_args.optimizer", path)
    assert not written(root)


@pytest.mark.parametrize(
    "path, canonical",
    [("lit_clf.run.cli.os.system", "posix.system"), ("lit_clf.trust.functools.partial", "functools.partial")],
)
def test_a_re_export_under_a_trusted_package_is_refused_as_what_it_is(
    path, canonical, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch
):
    line = run_cli_error(
        ["fit", *encoder_args(tmp_path, tiny_bert_dir, shared_data), f"--model.init_args.optimizer={path}"],
        capsys,
        monkeypatch,
    )
    assert_refused(line, "model.init_args.optimizer", canonical)


def test_a_function_of_a_trusted_package_is_refused_where_a_class_is_expected():
    """jsonargparse's import policy admits a whole package; the kind check refuses its functions."""
    spec = {"model": {"init_args": {"optimizer": {"class_path": "lit_clf.data.download.fetch", "init_args": {}}}}}
    with pytest.raises(
        UntrustedCode,
        match=r"optimizer: class path 'lit_clf\.data\.download\.fetch' is not trusted \(it is not a lit_clf model",
    ):
        check_config(spec)
    with pytest.raises(UntrustedCode, match="it is not a torch optimizer"):
        check_class_path("torch.optim.lr_scheduler.warnings.warn", "optimizer")
    with pytest.raises(UntrustedCode, match="it is not a transformers module class"):
        check_class_path("transformers.AutoConfig", "auto_wrap_policy")


def test_checkpoints_may_not_name_a_hub_kernel(
    encoder_checkpoint, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch
):
    checkpoint = torch.load(encoder_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["attn_implementation"] = "someone/kernel"
    torch.save(checkpoint, ckpt := tmp_path / "kernel.ckpt")
    line = run_cli_error(
        ["test", *encoder_args(tmp_path / "run", tiny_bert_dir, shared_data), f"--ckpt_path={ckpt}"],
        capsys,
        monkeypatch,
    )
    assert "model.init_args.attn_implementation: 'someone/kernel' is a hub kernel" in line


def test_weights_only_false_is_refused(encoder_checkpoint, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch):
    args = ["test", *encoder_args(tmp_path, tiny_bert_dir, shared_data), f"--ckpt_path={encoder_checkpoint}"]
    line = run_cli_error([*args, "--weights_only=false"], capsys, monkeypatch)
    assert "weights_only: false would let a checkpoint's pickled objects run code" in line


# ------------------------------------------------------------------- what is trusted, and the opt-in


def every_shipped_class_path() -> set[str]:
    """Each class path of the configs, the committed run folders and the README."""
    found = set()
    files = [*REPO.joinpath("configs").rglob("*.yaml"), *REPO.joinpath("docs", "runs").rglob("config.yaml")]
    for file in files:
        for path in re.findall(r"class_path: *([\w.]+)", file.read_text()):
            found.add(path)
    return found


def test_every_class_path_the_project_ships_is_trusted():
    paths = every_shipped_class_path()
    assert {
        "torch.optim.AdamW",
        "lit_clf.decoder.DecoderGenerativeModule",
        "lightning.pytorch.loggers.CSVLogger",
    } <= paths
    for path in sorted(paths):
        check_class_path(path, "config")
    for path in (
        "lit_clf.module.default_optimizer",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.strategies.FSDPStrategy",
        "transformers.models.llama.modeling_llama.LlamaDecoderLayer",
        "lightning.pytorch.cli.ReduceLROnPlateau",
    ):
        check_class_path(path, "config")


def test_allowed_on_command_line_reads_every_form():
    args = ["fit", "--allow_class_path", "my_pkg.A,my_pkg.B", "--allow_class_path=other", "--config", "x.yaml"]
    assert allowed_on_command_line(args) == ["my_pkg.A", "my_pkg.B", "other"]
    with pytest.raises(UntrustedCode, match="jsonargparse's own code cannot be allowed"):
        allowed_on_command_line(["--allow_class_path=jsonargparse.set_parsing_settings"])
    with pytest.raises(UntrustedCode, match="not a class path or package name"):
        allowed_on_command_line(["--allow_class_path=os.system; rm"])
    check_class_path("my_pkg.models.Mine", "model", allowed=["my_pkg"])
    with pytest.raises(UntrustedCode):
        check_class_path("my_pkg_other.Mine", "model", allowed=["my_pkg"])


def test_a_config_file_cannot_allow_code(marker, tiny_bert_dir, shared_data, tmp_path, capsys, monkeypatch):
    file = tmp_path / "allow.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "allow_class_path": "os",
                "trainer": {"callbacks": [{"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}]},
            }
        )
    )
    line = run_cli_error(
        ["test", *encoder_args(tmp_path / "run", tiny_bert_dir, shared_data), f"--config={file}"], capsys, monkeypatch
    )
    assert_refused(line, "trainer.callbacks", "os.system")


def test_a_users_own_class_runs_when_allowed_on_the_command_line(tiny_bert_dir, shared_data, tmp_path):
    args = ["fit", *encoder_args(tmp_path, tiny_bert_dir, shared_data), "--test_after_fit=false"]
    done = tmp_path / "recorded"
    callback = json.dumps({"class_path": "tests.test_trust.Recorder", "init_args": {"path": str(done)}})
    run_cli([*args, "--allow_class_path=tests.test_trust.Recorder", f"--trainer.callbacks+={callback}"])
    assert done.read_text() == "fitted"


def test_the_users_allowance_ends_with_the_run(capsys):
    with enforced(["tests.test_trust"]):
        assert callable_parser().parse_args(["--fn=tests.test_trust.a_function"]).fn() == "ran"
    with enforced(), pytest.raises(SystemExit):
        callable_parser().parse_args(["--fn=tests.test_trust.a_function"])
    assert "Importing 'tests.test_trust.a_function' is not allowed" in capsys.readouterr().err


def test_jsonargparse_refuses_what_lit_clf_does_not_trust(capsys):
    """The upstream policy lit_clf relies on (``set_parsing_settings(import_path_denylist=...)``) and the message
    lit_clf rewrites into one line: a change upstream fails here first."""
    with enforced():
        with pytest.raises(SystemExit):
            callable_parser().parse_args(["--fn=os.system"])
    message = capsys.readouterr().err
    assert trust.refusal_from_parser_message(message).startswith("fn: class path 'os.system' is not trusted")
    assert trust.refusal_from_parser_message('error: Parser key "x": expected an int') is None


# ------------------------------------------------------------------- legitimate checkpoints of each family


def test_a_legitimate_encoder_checkpoint_tests_and_predicts(encoder_checkpoint, tiny_bert_dir, shared_data, tmp_path):
    args = encoder_args(tmp_path, tiny_bert_dir, shared_data)
    run_cli(["test", *args, f"--ckpt_path={encoder_checkpoint}"])
    out = tmp_path / "predictions.jsonl"
    run_cli(["predict", *args, f"--ckpt_path={encoder_checkpoint}", f"--predictions.output_path={out}"])
    assert len(out.read_text().splitlines()) == 16


def test_a_legitimate_decoder_checkpoint_tests_and_predicts(tiny_smollm_dir, shared_data, tmp_path):
    args = [
        "--config",
        DECODER_CONFIG,
        *decoder_overrides(tmp_path, tiny_smollm_dir, shared_data),
        "--trainer.logger=false",
    ]
    run_cli(["fit", *args, "--test_after_fit=false"])
    (ckpt,) = tmp_path.rglob("best.ckpt")
    run_cli(["test", *args, f"--ckpt_path={ckpt}", "--overwrite_run=true"])
    out = tmp_path / "predictions.jsonl"
    run_cli(["predict", *args, f"--ckpt_path={ckpt}", f"--predictions.output_path={out}", "--overwrite_run=true"])
    assert len(out.read_text().splitlines()) == 6


# ------------------------------------------------------------------- other files lit_clf reads


def test_a_prompt_file_cannot_reach_attributes(tmp_path):
    """Placeholders are exact names: ``{text.__class__...}`` could read objects' attributes; refused."""
    from lit_clf.prompting.templates import load_template

    file = tmp_path / "prompt.txt"
    file.write_text("{text.__class__.__init__.__globals__} {text}")
    with pytest.raises(ValueError, match="unknown placeholder"):
        load_template(file, ["intent"], 0)


def test_the_report_imports_no_module_a_run_config_names(marker):
    """``lit-clf-report`` reads other people's run folders and W&B files: a data class path outside lit_clf is
    spelled from its name, never imported (the marker module would create the marker)."""
    from lit_clf.report.identity import dataset_name

    assert dataset_name(f"{MARKER_MODULE}.SomethingDataModule", only_lit_clf=True) == "Something"
    assert dataset_name("lit_clf.data.MassiveDataModule", only_lit_clf=True) == "massive"


class Recorder(Callback):
    """A user's own callback (a Lightning Callback defined outside lit_clf): writes ``path`` when the fit ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.path.write_text("fitted")


def a_function():
    return "ran"


def callable_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=True)
    parser.add_argument("--fn", type=Callable)
    return parser


def test_load_from_checkpoint_refuses_what_the_cli_refuses(marker, encoder_checkpoint, tmp_path):
    """The Python route (README: ``EncoderSeqTokenModule.load_from_checkpoint(path)``): Lightning builds the
    options a LightningCLI checkpoint names, so the same checks apply; a legitimate checkpoint still loads."""
    from lit_clf.encoder import EncoderSeqTokenModule

    for place, path in [("optimizer", "os.system"), ("lr_scheduler", "builtins.exec"), ("model", "subprocess.call")]:
        ckpt = crafted(encoder_checkpoint, tmp_path / f"{place}.ckpt", place, path, CALLABLES[path](marker))
        with pytest.raises(UntrustedCode, match=f"{CHECKPOINT_KEYS[place]}: class path '{path}' is not trusted"):
            EncoderSeqTokenModule.load_from_checkpoint(ckpt)
    checkpoint = torch.load(encoder_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"] = "lit_clf.data.download.fetch"
    torch.save(checkpoint, bare := tmp_path / "bare.ckpt")
    with pytest.raises(UntrustedCode, match="model.init_args.optimizer: class path 'lit_clf.data.download.fetch'"):
        EncoderSeqTokenModule.load_from_checkpoint(bare)
    with pytest.raises(ValueError, match="weights_only=True only"):
        EncoderSeqTokenModule.load_from_checkpoint(encoder_checkpoint, weights_only=False)
    model = EncoderSeqTokenModule.load_from_checkpoint(encoder_checkpoint)
    assert [task.name for task in model.tasks] == ["intent"]


def test_enforced_puts_jsonargparse_policy_back(capsys):
    """Outside lit_clf's own parsing (a notebook's jsonargparse), the policy is what it was before."""
    before = dict(jsonargparse_settings()["import_path_verdicts"])
    with enforced(["my_pkg"]):
        assert jsonargparse_settings()["import_path_verdicts"]["*"] is False
    assert jsonargparse_settings()["import_path_verdicts"] == before
