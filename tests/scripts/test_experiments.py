"""lit-clf-experiments (configs/experiments/table3-cpu.yaml, through scripts/table3-cpu.sh): steps skipped once their
run folder is in docs/, a stopped fit resumed from last.ckpt, a stopped test from its answer log, a test whose
checkpoint is gone fitted again first; the GPU profile's options and run names."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from lit_clf.run.experiments import ExperimentError, load_experiment, load_profile
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
exit ${FAKE_EXIT:-0}
"""


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "table3-cpu.sh", tmp_path / "scripts")
    shutil.copy(REPO / "scripts" / "table3-gpu.sh", tmp_path / "scripts")
    shutil.copytree(REPO / "configs" / "experiments", tmp_path / "configs" / "experiments")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("lit-clf", FAKE),
        ("lit-clf-experiments", f'#!/usr/bin/env bash\nexec {sys.executable} -m lit_clf.run.experiments "$@"\n'),
    ):
        fake = bin_dir / name
        fake.write_text(text)
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def run_steps(checkout, *steps: str, script: str = "table3-cpu.sh", check: bool = True, **env_extra) -> list[str]:
    log = checkout / "calls.log"
    path = os.pathsep.join([str(checkout / "bin"), os.environ["PATH"]])
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "LOG": str(log), **env_extra}
    done = subprocess.run(["bash", f"scripts/{script}", *steps], cwd=checkout, env=env, capture_output=True, text=True)
    assert (done.returncode == 0) == check, done.stderr[-2000:]
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
    fit, free, search = run_steps(checkout, "ft-joint-inline", "ft-joint-inline-free", "lr-slots-inline-1.0e-4")
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
    assert "-c configs/trainer/lr-search.yaml" in search and "--model.init_args.optimizer.init_args.lr 1.0e-4" in search
    assert "--trainer.logger.init_args.name massive-smollm2-slots-inline-lr1.0e-4" in search
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
    paper, inline = (call + " " for call in run_steps(checkout, "ft-joint-taskloss", "ft-joint-inline-taskloss"))
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


def test_the_gpu_profile_adds_its_options_and_suffix(checkout):
    fit, test = run_steps(checkout, "ft-intent", "noft-intent-0shot-score", script="table3-gpu.sh")
    assert "--trainer.accelerator gpu --trainer.devices 1 --trainer.precision bf16-mixed" in fit
    assert "--trainer.max_epochs 2" in fit and "--trainer.max_epochs" not in test  # fit_args: fits only
    assert "--trainer.logger.init_args.name massive-smollm2-intent-0shot-ft-gpu " in fit + " "
    assert "--data.init_args.eval_batch_size 128" in test and "-noft-score-gpu" in test
    assert (checkout / "docs" / "runs" / "massive-smollm2-intent-0shot-ft-gpu" / "metrics.csv").is_file()


def test_the_gpu_profile_runs_its_own_steps_and_keeps_going_after_a_failure(checkout):
    calls = run_steps(checkout, script="table3-gpu.sh", check=False, FAKE_EXIT="1")
    steps = load_profile(REPO / "configs/experiments/profiles/gpu.yaml").steps
    assert len(calls) == len(steps)  # every step was tried, in the profile's order
    assert [call.split()[0] for call in calls[:5]] == ["fit"] * 5 and "-ft-free-gpu" in calls[5]
    assert not (checkout / "docs").exists()  # failed runs are not copied


def test_every_committed_run_folder_has_its_step():
    experiment = load_experiment(REPO / "configs/experiments/table3-cpu.yaml")
    names = {(step.kind, step.name) for step in experiment.steps.values()}
    suffix = load_profile(REPO / "configs/experiments/profiles/gpu.yaml").suffix
    for kind in ("runs", "lr-search"):
        for folder in (REPO / "docs" / kind).iterdir():
            name = folder.name.removesuffix(suffix)
            assert (kind, name) in names, f"docs/{kind}/{folder.name}: no step in table3-cpu.yaml makes it"
    for step in experiment.steps.values():  # every config an argument names exists
        for arg in step.args:
            if arg.startswith("configs/"):
                assert (REPO / arg).is_file(), f"{step.id}: {arg}"


def test_bad_files_and_unknown_steps_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  x: {name: a, run: validate}\n")
    with pytest.raises(ExperimentError, match="step 'x': run must be fit or test"):
        load_experiment(bad)
    bad.write_text("steps:\n  x: {name: a, run: fit, recipe: nope}\n")
    with pytest.raises(ExperimentError, match="no recipe 'nope'"):
        load_experiment(bad)
    bad.write_text("steps:\n  x: {name: a, run: fit, args: ['{where}']}\n")
    with pytest.raises(ExperimentError, match="no variable 'where'"):
        load_experiment(bad)
    with pytest.raises(ExperimentError, match="no step 'nope'"):
        load_experiment(REPO / "configs/experiments/table3-cpu.yaml").select(["nope"])
    with pytest.raises(ExperimentError, match="no such experiment file"):
        load_experiment("does-not-exist")


def test_variables_fill_the_options():
    experiment = load_experiment(REPO / "configs/experiments/table3-cpu.yaml", {"models": "/weights"})
    assert "/weights/smollm2-135m-instruct" in experiment.steps["ft-intent"].args
    assert "../shared/models/all-MiniLM-L6-v2" in experiment.steps["minilm-wnut17"].args
