"""Progress as plain lines when stdout is not a terminal (a cluster log): printed while the run goes, not at its end."""

from __future__ import annotations

import re

import pytest

from lit_clf.run.progress import LogProgress
from tests.helpers import run_cli, tiny_encoder_args


def test_a_fit_piped_to_a_log_prints_progress_lines_as_it_goes(tmp_path, tiny_roberta_dir, shared_data, capsys):
    args = tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data)  # 16 examples, batch 32 -> one step an epoch
    run_cli(["fit", *args, "--trainer.max_epochs=3", "--progress.every_n_steps=1", "--test_after_fit=true"])
    out = capsys.readouterr().out  # pytest's capture: not a terminal
    steps = re.findall(
        r"^fit: step (\d+)/3 \((\d+)%\) \| loss [\d.]+ \| [\d.]+ examples/s \| [\d,]+ tokens/s \| ETA", out, re.M
    )
    assert [int(step) for step, _ in steps] == [1, 2, 3]  # step 1 of 3: printed during the fit, with its ETA
    assert out.count("val: done, 16 examples in") == 3 and "test: done, 16 examples in" in out
    assert re.search(r"^test: batch 1/1 \(100%\) \| [\d.]+ examples/s", out, re.M)
    assert not re.search(r"Epoch \d+/\d+", out)  # no progress bar drawn beside them


def test_no_lines_when_progress_is_switched_off(tmp_path, tiny_roberta_dir, shared_data, capsys):
    args = tiny_encoder_args(tmp_path, tiny_roberta_dir, shared_data)
    run_cli(["fit", *args, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--test_after_fit=false"])
    assert "fit: step" not in capsys.readouterr().out


def test_bad_progress_options():
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        LogProgress(every_n_steps=0)
