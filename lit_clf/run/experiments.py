"""``lit-clf-experiments``: the runs behind docs/RESULTS.md, as data (``configs/experiments/<name>.yaml``).

An experiment file lists steps, each one ``lit-clf`` run (``fit`` or ``test``) from configs and options, named as its
folder in ``docs/<kind>/``. The runner runs them in order and keeps what a week of sessions needs:

* a step whose folder is in ``docs/`` already is skipped;
* a fit stopped half-way resumes from its ``last.ckpt`` (``--ckpt_path last``); a test logs its answers to
  ``runs/<name>/answers.jsonl`` and resumes from them;
* a test of a fine-tuned checkpoint (``checkpoint: <step>``) whose fit left no ``best.ckpt`` here (``runs/`` is not
  committed) fits that step again first and prints its dev metrics beside the committed ones;
* each finished run's ``config.yaml``, ``metrics.csv`` and ``hparams.yaml`` are copied to ``docs/<kind>/<name>/``.

A profile (``configs/experiments/profiles/<name>.yaml``) runs the same steps elsewhere: a run-name ``suffix``,
options added to every run (``args``) and to fits (``fit_args``), and the ``steps`` it runs by default.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPERIMENTS = Path("configs/experiments")
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml")


class ExperimentError(ValueError):
    """A malformed experiment or profile file, or an unknown step: one line naming the file or step."""


@dataclass(frozen=True)
class Step:
    """One ``lit-clf`` run: ``id`` (what the user names), the run's ``name``, ``run`` (fit or test), its options."""

    id: str
    name: str
    run: str
    args: tuple[str, ...]
    kind: str = "runs"
    checkpoint: str | None = None


@dataclass(frozen=True)
class Profile:
    """Where the steps run: a run-name suffix, options for every run and for fits, the default steps."""

    suffix: str = ""
    args: tuple[str, ...] = ()
    fit_args: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    keep_going: bool = False


@dataclass
class Experiment:
    """The steps of one experiment file, in order."""

    source: Path
    steps: dict[str, Step] = field(default_factory=dict)

    def select(self, ids: Sequence[str]) -> list[Step]:
        unknown = [i for i in ids if i not in self.steps]
        if unknown:
            raise ExperimentError(f"{self.source}: no step {unknown[0]!r} (lit-clf-experiments list shows them)")
        return [self.steps[i] for i in ids] if ids else list(self.steps.values())


def load_experiment(name: str | Path, variables: Mapping[str, str] = ()) -> Experiment:
    """The experiment ``configs/experiments/<name>.yaml`` (or the file ``name``), ``{var}`` filled from its
    ``vars`` and ``variables`` (``--var``)."""
    path = _find(name, EXPERIMENTS)
    data = _mapping(path)
    values = {**{str(k): str(v) for k, v in (data.get("vars") or {}).items()}, **dict(variables)}
    recipes = data.get("recipes") or {}
    experiment = Experiment(path)
    for step_id, spec in (data.get("steps") or {}).items():
        where = f"{path}: step {step_id!r}"
        if not isinstance(spec, Mapping) or {"name", "run"} - set(spec):
            raise ExperimentError(f"{where}: expected a mapping with name and run")
        if spec["run"] not in ("fit", "test"):
            raise ExperimentError(f"{where}: run must be fit or test, got {spec['run']!r}")
        names = spec.get("recipe") or []
        args = [
            arg for recipe in ([names] if isinstance(names, str) else names) for arg in _recipe(recipes, recipe, where)
        ]
        args += [str(arg) for arg in spec.get("args") or []]
        try:
            args = [arg.format(**values) for arg in args]
        except KeyError as err:
            raise ExperimentError(f"{where}: no variable {err.args[0]!r} (vars, or --var)") from None
        experiment.steps[str(step_id)] = Step(
            str(step_id),
            str(spec["name"]),
            spec["run"],
            tuple(args),
            str(spec.get("kind", "runs")),
            spec.get("checkpoint"),
        )
    for step in experiment.steps.values():
        if step.checkpoint is not None and step.checkpoint not in experiment.steps:
            raise ExperimentError(f"{path}: step {step.id!r}: checkpoint names no step ({step.checkpoint!r})")
    return experiment


def load_profile(name: str | Path | None) -> Profile:
    """``configs/experiments/profiles/<name>.yaml`` (or the file ``name``); the empty profile for None."""
    if name is None:
        return Profile()
    path = _find(name, EXPERIMENTS / "profiles")
    data = _mapping(path)
    unknown = set(data) - {"suffix", "args", "fit_args", "steps", "keep_going"}
    if unknown:
        raise ExperimentError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    return Profile(
        str(data.get("suffix") or ""),
        tuple(str(a) for a in data.get("args") or ()),
        tuple(str(a) for a in data.get("fit_args") or ()),
        tuple(str(s) for s in data.get("steps") or ()),
        bool(data.get("keep_going", False)),
    )


class Runner:
    """Runs steps through the ``lit-clf`` on the PATH, in the current folder (the checkout: configs/, runs/,
    docs/)."""

    def __init__(self, experiment: Experiment, profile: Profile, until: float | None = None) -> None:
        self.experiment, self.profile, self.until = experiment, profile, until

    def run(self, steps: Sequence[Step]) -> int:
        """Run ``steps``; the exit code of the first that failed (0 if none did)."""
        failed = 0
        for step in steps:
            if self.until is not None and self.until - time.time() < 30:
                print(f"=== stop: no time left for {step.id}", flush=True)
                break
            code = self.step(step)
            if code:
                print(f"=== {step.id}: exit {code}", flush=True)
                failed = failed or code
                if not self.profile.keep_going:
                    break
        return failed

    def step(self, step: Step) -> int:
        name = step.name + self.profile.suffix
        docs = Path("docs") / step.kind / name
        if (docs / "metrics.csv").is_file():
            print(f"skip {name} (docs/{step.kind}/{name} exists)", flush=True)
            return 0
        args = list(step.args)
        if step.checkpoint is not None:
            fitted = self.experiment.steps[step.checkpoint]
            code = self.refit(fitted)
            if code:
                return code
            args += ["--ckpt_path", str(self.best_checkpoint(fitted))]
        code = self.launch(step.kind, name, step.run, args)
        if code == 0:
            docs.mkdir(parents=True, exist_ok=True)
            folder = newest(self.save_dir(step.kind) / name)
            for file in RUN_FILES:
                shutil.copy(folder / file, docs / file)
            print(f"=== {name} done ({_now()})", flush=True)
        return code

    def save_dir(self, kind: str) -> Path:
        return Path("runs") if kind == "runs" else Path("runs") / kind

    def best_checkpoint(self, step: Step) -> Path:
        folder = newest(self.save_dir(step.kind) / (step.name + self.profile.suffix), missing_ok=True)
        return (folder or Path("missing")) / "checkpoints" / "best.ckpt"

    def refit(self, step: Step) -> int:
        """Fit ``step`` again (without its test) when its best checkpoint is gone; print its dev metrics beside
        the committed run's (the same seed and config give the same run)."""
        if self.best_checkpoint(step).is_file():
            return 0
        name = step.name + self.profile.suffix
        code = self.launch(step.kind, name, "fit", [*step.args, "--test_after_fit", "false"])
        if code:
            return code
        committed = Path("docs") / step.kind / name / "metrics.csv"
        if committed.is_file():
            for line in compare_dev(committed, newest(self.save_dir(step.kind) / name) / "metrics.csv"):
                print(line, flush=True)
        print(f"=== refit {name} done ({_now()})", flush=True)
        return 0

    def launch(self, kind: str, name: str, subcommand: str, args: Sequence[str]) -> int:
        """One ``lit-clf`` run logged to ``runs/[<kind>/]<name>/version_<n>``: a fit resumes from its last.ckpt, a
        test logs its answers (both resumable), with the profile's options."""
        save = self.save_dir(kind)
        extra = [*self.profile.args, *(self.profile.fit_args if subcommand == "fit" else ())]
        resume: list[str] = []
        if subcommand == "fit" and any((save / name).glob("version_*/checkpoints/last.ckpt")):
            resume = ["--ckpt_path", "last"]
        if subcommand == "test":
            resume = ["--model.init_args.answer_log", str(save / name / "answers.jsonl")]
        command = [subcommand, *args, *extra, *resume]
        command += ["--trainer.logger.init_args.save_dir", str(save)]
        command += ["--trainer.logger.init_args.name", name]  # progress: plain lines in a log (lit_clf.run.progress)
        print(f"=== {name}: lit-clf {' '.join(command)} ({_now()})", flush=True)
        return self._call(["lit-clf", *command])

    def _call(self, command: list[str]) -> int:
        process = subprocess.Popen(command)
        try:
            return process.wait(timeout=None if self.until is None else max(1.0, self.until - time.time()))
        except subprocess.TimeoutExpired:  # --until: stop it as Ctrl-C would; it resumes on the next call
            process.send_signal(signal.SIGINT)
            try:
                return process.wait(timeout=30) or 124
            except subprocess.TimeoutExpired:
                process.kill()
                return 124


def newest(folder: Path, missing_ok: bool = False) -> Path | None:
    """The newest ``version_<n>`` folder under ``folder``."""
    versions = sorted(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]) if p.name[8:].isdigit() else -1)
    if not versions:
        if missing_ok:
            return None
        raise ExperimentError(f"{folder}: no version_<n> run folder (the run did not start?)")
    return versions[-1]


def compare_dev(committed: Path, refit: Path) -> list[str]:
    """``refit step S: val/x 0.1234 (+0.0001), ...`` for every validation both metrics files logged."""
    a, b = _dev(committed), _dev(refit)
    lines = []
    for step in sorted(set(a) & set(b), key=int):
        diffs = {k: b[step][k] - v for k, v in a[step].items() if k in b[step]}
        lines.append(f"refit step {step}: " + ", ".join(f"{k} {b[step][k]:.4f} ({d:+.4f})" for k, d in diffs.items()))
    return lines


def _dev(path: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            values = {k: float(v) for k, v in row.items() if k and k.startswith("val/") and v}
            if values:
                rows.setdefault(row["step"], {}).update(values)
    return rows


def _recipe(recipes: Mapping[str, Any], name: str, where: str) -> list[str]:
    if name not in recipes:
        raise ExperimentError(f"{where}: no recipe {name!r}")
    return [str(arg) for arg in recipes[name]]


def _find(name: str | Path, folder: Path) -> Path:
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ExperimentError(f"{path}: no such experiment file")
    return path


def _mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a mapping")
    return data


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lit-clf-experiments", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (("run", "run steps (all, or those named)"), ("list", "list the steps")):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("experiment", help="a name in configs/experiments/ (table3-cpu) or a YAML file")
        if command == "run":
            sub.add_argument("steps", nargs="*", help="step ids (default: the profile's steps, else all)")
            sub.add_argument("--until", type=float, help="epoch seconds: start no step after it, stop the running one")
        sub.add_argument("--profile", help="a name in configs/experiments/profiles/ (gpu) or a YAML file")
        sub.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a {variable}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lit-clf-experiments``."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)  # step ids may follow the options too
    if rest and (args.command != "run" or any(item.startswith("-") for item in rest)):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.steps = [*args.steps, *rest]
    try:
        variables = dict(item.split("=", 1) for item in args.var if "=" in item)
        experiment = load_experiment(args.experiment, variables)
        profile = load_profile(args.profile)
        if args.command == "list":
            for step in experiment.steps.values():
                print(f"{step.id}\t{step.name}{profile.suffix}")
            return
        steps = experiment.select(args.steps or profile.steps)
    except ExperimentError as err:
        print(f"lit-clf-experiments: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(Runner(experiment, profile, args.until).run(steps))


if __name__ == "__main__":
    main()
