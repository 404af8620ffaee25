"""``lit-clf plan --config ... [overrides]``: whether a run fits, before a GPU hour is spent, and the check ``fit``
runs first.

``plan`` parses exactly what ``fit`` would (the same files and overrides, trust checks included) but instantiates
nothing: the model's ``config.json`` alone is read (the paper's models ship theirs) and counted on the meta device.
It prints the per-device and per-node terms (:mod:`lit_clf.planning.memory`) and ends with
``peak per device: X GiB of Y GiB; host: Z GiB``; exit status 0 when the run fits, 3 when it does not (the line
before names the largest term).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from lit_clf.planning.memory import plan_memory
from lit_clf.planning.report import fits, last_line, plan_lines
from lit_clf.planning.setup import run_setup

#: Exit status of a run that does not fit.
DOES_NOT_FIT = 3

#: The device memory assumed without a GPU to read it from: the paper's A100 80GB.
DEFAULT_DEVICE_GIB = 80.0


def add_plan_arguments(parser) -> None:
    """The ``--plan.*`` options of every subcommand (``fit`` reads them for its check, ``plan`` for its report)."""
    parser.add_argument(
        "--plan.check",
        type=bool,
        default=True,
        help="fit: compute the memory plan first (`lit-clf plan`) and stop with exit status 3 and the plan's line "
        "when the run does not fit. Runs on GPUs, or wherever --plan.device_memory is given; false skips it.",
    )
    parser.add_argument(
        "--plan.device_memory",
        type=float | None,
        default=None,
        help="Memory of one device in GiB; unset: the visible GPU's, else 80 (the paper's A100 80GB).",
    )
    parser.add_argument(
        "--plan.host_memory",
        type=float | None,
        default=None,
        help="Host memory of one node in GiB: the plan then also checks loading, offload and test after fit "
        "against it; unset: printed, not checked.",
    )
    parser.add_argument(
        "--plan.stage",
        type=str | None,
        default=None,
        help="plan: `fit` (training and validation, the default) or `test` (evaluation alone: the w/o FT rows).",
    )


def device_memory(option: float | None) -> float:
    if option is not None:
        return float(option)
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return DEFAULT_DEVICE_GIB


def report(config: Any, stage: str = "fit") -> tuple[list[str], bool]:
    """The plan's lines for a subcommand's config namespace, and whether the run fits."""
    options = config.get("plan") or {}
    shape, setup = run_setup(config, stage=options.get("stage") or stage)
    plan = plan_memory(shape, setup)
    memory = device_memory(options.get("device_memory"))
    host = options.get("host_memory")
    return plan_lines(plan, memory, host), fits(plan, memory, host)[0]


def check_before_fit(config: Any) -> None:
    """``fit``'s check: on GPUs (or with ``--plan.device_memory``), stop with exit status 3 and the plan's verdict
    when the run cannot fit. A model whose ``config.json`` cannot be read is not checked (a warning says so)."""
    options = config.get("plan") or {}
    accelerator = str((config.get("trainer") or {}).get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not options.get("check", True) or not (on_gpu or options.get("device_memory") is not None):
        return
    try:
        lines, ok = report(config, "fit")
    except ValueError as err:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(f"plan: not checked ({err})")
        return
    if ok:
        return
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0:
        print("\n".join(lines[-2:]), file=sys.stderr)
        print("lit-clf: the run does not fit (--plan.check false runs it anyway)", file=sys.stderr)
    raise SystemExit(DOES_NOT_FIT)


def plan_main(args: list[str], options: dict[str, Any]) -> None:
    """``lit-clf plan ARGS``: the ``fit`` parser (``LitClfCLI`` with ``options``) over ARGS, nothing instantiated,
    the plan printed."""
    from lit_clf.run.cli import LitClfCLI

    class PlanCLI(LitClfCLI):
        def instantiate_classes(self) -> None:  # nothing: no tokenizer, data or weights
            pass

        def run_subcommand(self, subcommand: str) -> None:
            lines, ok = report(self.config[subcommand], "fit")
            print("\n".join(lines))
            raise SystemExit(0 if ok else DOES_NOT_FIT)

    argv, sys.argv = sys.argv, [sys.argv[0], "fit", *args]  # parsed as `lit-clf fit ARGS` would be
    try:
        PlanCLI(auto_configure_optimizers=False, **options)
    finally:
        sys.argv = argv


__all__ = ["DOES_NOT_FIT", "add_plan_arguments", "check_before_fit", "last_line", "plan_main", "report"]
