"""Resume is exact: a run SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends with the metrics of an
uninterrupted run, bit for bit (CPU), and keeps its whole metrics history in one folder."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from tests.helpers import REPO

# Columns that measure time, not training.
TIMING = ("cost/", "train/samples_per_s", "train/tokens_per_s")


def start(folder: Path, backbone: Path, *extra: str) -> tuple[subprocess.Popen, IO[str]]:
    """``lit-clf fit`` of the toy recipe in ``folder``, started (the caller waits), and the file its stderr goes to
    (a file, not a pipe: a run nobody reads yet must not block on a full pipe)."""
    args = [
        sys.executable,
        "-m",
        "lit_clf",
        "fit",
        f"--config={REPO / 'configs' / 'massive' / 'minilm-intent.yaml'}",
        f"--model.init_args.backbone={backbone}",
        "--model.init_args.pretrained=false",
        "--data=tests.helpers.ToyDataModule",
        "--allow_class_path=tests.helpers",
        "--data.init_args.tasks=[intent, slots]",
        "--data.init_args.batch_size=2",  # 4 batches per epoch
        "--trainer.max_epochs=3",
        "--trainer.val_check_interval=2",  # a checkpoint (best and last) every 2 steps
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={folder}",
        f"--trainer.logger.init_args.save_dir={folder / 'runs'}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIT_CLF_TRACEBACK": "1"}
    stderr = tempfile.TemporaryFile("w+")
    return subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True), stderr


def finish(run: tuple[subprocess.Popen, IO[str]]) -> tuple[int, str]:
    """The exit code and stderr of a started run."""
    process, stderr = run
    with stderr:
        process.wait(timeout=600)
        stderr.seek(0)
        return process.returncode, stderr.read()


def history(folder: Path) -> list[dict[str, str]]:
    (metrics,) = folder.rglob("metrics.csv")  # one run folder: the resumed run logged into the killed run's
    with metrics.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in row.items() if v and not k.startswith(TIMING)} for row in rows]


def test_a_killed_run_resumed_from_last_ends_as_an_uninterrupted_one(tmp_path, tiny_roberta_dir):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    kill = killed / "kill.yaml"
    kill.write_text("trainer:\n  callbacks:\n    - class_path: tests.helpers.KillAtStep\n      init_args: {step: 7}\n")
    # The uninterrupted run and the one to be killed are independent: run them side by side.
    done, crashed = start(whole, tiny_roberta_dir), start(killed, tiny_roberta_dir, f"--config={kill}")
    (code, stderr), (crash_code, _) = finish(done), finish(crashed)
    assert code == 0, stderr[-3000:]
    assert crash_code == -9  # SIGKILL after step 7, mid-epoch 2; the last checkpoint is from step 6
    code, stderr = finish(start(killed, tiny_roberta_dir, "--ckpt_path=last"))
    assert code == 0, stderr[-3000:]
    expected, got = history(whole), history(killed)
    assert [row for row in expected if "test/intent_acc" in row]  # test_after_fit ran
    assert sum("train/loss" in row for row in expected) == 12  # one row per step: the whole history
    assert got == expected
