"""scripts/table3-cpu.sh: steps skipped once their run folder is in docs/, a stopped fit resumed from last.ckpt, a
stopped test from its answer log."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.helpers import REPO

# A stand-in lit-clf: records its arguments and writes the run folder a real run would.
FAKE = """#!/usr/bin/env bash
echo "$*" >> "$LOG"
sub=$1
while [[ $# -gt 0 ]]; do
  case $1 in
    --trainer.logger.init_args.save_dir) save=$2 ;;
    --trainer.logger.init_args.name) name=$2 ;;
  esac
  shift
done
mkdir -p "$save/$name/version_0/checkpoints"
for f in config.yaml metrics.csv hparams.yaml; do echo x > "$save/$name/version_0/$f"; done
[[ $sub == fit ]] && echo x > "$save/$name/version_0/checkpoints/best.ckpt"
exit 0
"""


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "table3-cpu.sh", tmp_path / "scripts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "lit-clf"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def run_steps(checkout, *steps: str) -> list[str]:
    log = checkout / "calls.log"
    env = {**os.environ, "PATH": f"{checkout / 'bin'}:{os.environ['PATH']}", "LOG": str(log)}
    subprocess.run(["bash", "scripts/table3-cpu.sh", *steps], cwd=checkout, env=env, check=True, capture_output=True)
    return log.read_text().splitlines() if log.exists() else []


def test_a_stopped_fit_resumes_and_a_finished_step_is_skipped(checkout):
    name = "massive-smollm2-intent-0shot-ft"
    (checkout / "runs" / name / "version_0" / "checkpoints").mkdir(parents=True)
    (checkout / "runs" / name / "version_0" / "checkpoints" / "last.ckpt").write_text("state")
    (call,) = run_steps(checkout, "ft-intent")
    assert call.startswith("fit -c configs/massive/smollm2-135m-intent.yaml") and "--ckpt_path last" in call
    assert (checkout / "docs" / "runs" / name / "metrics.csv").is_file()  # copied when the run ended
    assert run_steps(checkout, "ft-intent") == [call]  # in docs/ now: skipped, nothing new
    (call,) = run_steps(checkout, "ft-slots")[1:]  # a first run: no checkpoint, no resume
    assert "--ckpt_path" not in call


def test_inline_steps_add_the_inline_prompt_to_the_papers_recipe(checkout):
    fit, free, search = run_steps(checkout, "ft-joint-inline", "ft-joint-inline-free", "lr-slots-inline:3.0e-4")
    joint = "configs/massive/smollm2-135m-joint.yaml"
    prompt = "--model.init_args.prompt_file configs/prompts/massive-intent+slots-inline-0shot.yaml"
    assert fit.startswith(f"fit -c {joint}") and prompt in fit
    assert "--trainer.logger.init_args.name massive-smollm2-joint-inline-0shot-ft " in fit + " "
    assert free.startswith(f"test -c {joint}") and prompt in free and "--model.init_args.decoding free" in free
    assert "runs/massive-smollm2-joint-inline-0shot-ft/version_0/checkpoints/best.ckpt" in free
    log = "--model.init_args.answer_log runs/massive-smollm2-joint-inline-0shot-ft-free/answers.jsonl"
    assert log in free and "answer_log" not in fit  # a stopped test resumes from its answers
    slots = "-c configs/massive/smollm2-135m-slots.yaml"
    assert search.startswith(f"fit {slots}") and "configs/prompts/massive-slots-inline-0shot.yaml" in search
    assert "-c configs/trainer/lr-search.yaml" in search and "--model.init_args.optimizer.init_args.lr 3.0e-4" in search
    assert "--trainer.logger.init_args.name massive-smollm2-slots-inline-lr3.0e-4" in search
    (intent,) = run_steps(checkout, "lr-3.0e-5")[3:]  # the intent search keeps its run names
    assert "massive-smollm2-intent-lr3.0e-5" in intent and "prompt_file" not in intent


def test_a_free_decoding_step_whose_checkpoint_is_gone_fits_again_first(checkout):
    # runs/ is not committed: on a fresh machine the fine-tuned run is in docs/runs/ but its checkpoint is not
    name = "massive-smollm2-joint-inline-0shot-ft"
    (checkout / "docs" / "runs" / name).mkdir(parents=True)
    (checkout / "docs" / "runs" / name / "metrics.csv").write_text("step,val/slots_f1\n255,0.5\n")
    refit, free = run_steps(checkout, "ft-joint-inline-free")
    assert refit.startswith("fit -c configs/massive/smollm2-135m-joint.yaml") and "--test_after_fit false" in refit
    assert "--model.init_args.prompt_file configs/prompts/massive-intent+slots-inline-0shot.yaml" in refit
    assert f"--trainer.logger.init_args.name {name} " in refit + " "
    assert free.startswith("test ") and f"runs/{name}/version_0/checkpoints/best.ckpt" in free
    assert (checkout / "docs" / "runs" / name / "metrics.csv").read_text().startswith("step,")  # kept as it was
    assert run_steps(checkout, "ft-joint-inline-free")[2:] == []  # its free run is in docs/ now: nothing again


def test_taskloss_steps_add_the_task_weighted_loss_to_the_consolidated_recipes(checkout):
    paper, inline = run_steps(checkout, "ft-joint-taskloss", "ft-joint-inline-taskloss")
    loss = "-c configs/decoder/loss/task.yaml"
    assert paper.startswith("fit -c configs/massive/smollm2-135m-joint.yaml") and loss in paper
    assert (
        "prompt_file" not in paper
        and "--trainer.logger.init_args.name massive-smollm2-joint-taskloss-0shot-ft " in paper
    )
    assert (
        loss in inline
        and "--model.init_args.prompt_file configs/prompts/massive-intent+slots-inline-0shot.yaml" in inline
    )
    assert "--trainer.logger.init_args.name massive-smollm2-joint-inline-taskloss-0shot-ft " in inline
    (plain,) = run_steps(checkout, "ft-joint")[2:]
    assert "loss/task.yaml" not in plain
