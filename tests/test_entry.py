"""``lit-clf`` answers what needs no model at once: the top-level help, a mistyped subcommand, a missing or broken
``--config`` file, each without importing torch (the seconds a run's imports take; docs/BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO


def lit_clf(*args: str) -> subprocess.CompletedProcess:
    """``python -X importtime -m lit_clf ARGS``: its output, and in stderr every module it imported."""
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lit_clf", *args], cwd=REPO, capture_output=True, text=True
    )


def imported(done: subprocess.CompletedProcess) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--help",), 0, "usage: lit-clf {fit,validate,test,predict,plan,export}"),
        (("fti",), 2, "lit-clf: error: unknown subcommand 'fti' (choose from fit, validate, test, predict, plan, "
         "export); did you mean fit?"),
        (("fit", "-c", "no-such.yaml"), 2, "lit-clf: error: --config no-such.yaml: no such file"),
        (("test", "--config=configs"), 2, "lit-clf: error: --config configs: a folder"),
    ],
)  # fmt: skip
def test_quick_answers_import_no_torch(args, code, message):
    done = lit_clf(*args)
    assert done.returncode == code
    assert message in done.stdout + done.stderr
    modules = imported(done)
    assert "lit_clf.run.entry" in modules and not {"torch", "lightning", "transformers"} & modules


def test_a_config_that_is_not_yaml_names_its_line(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  init_args: {backbone: x\n")
    done = lit_clf("fit", "-c", str(config))
    assert done.returncode == 2 and f"--config {config}:" in done.stderr and "not valid YAML" in done.stderr
    assert "torch" not in imported(done)


def test_a_good_command_goes_on_to_the_run(capsys):
    from lit_clf.run.entry import main

    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0 and "--model" in capsys.readouterr().out
