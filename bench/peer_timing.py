"""Whole-process timing shared by the peer benchmarks: one process per run under ``/usr/bin/time -v``, the sides
alternating (the order rotates each round), medians over the runs."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_FIELDS = {
    "wall_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.+)",
    "user_s": r"User time \(seconds\): ([\d.]+)",
    "sys_s": r"System time \(seconds\): ([\d.]+)",
    "peak_rss_mib": r"Maximum resident set size \(kbytes\): (\d+)",
}


def clock(text: str) -> float:
    """Seconds of ``h:mm:ss`` or ``m:ss.ss``."""
    parts = [float(p) for p in text.strip().split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def timed(command: list[str], cwd: Path) -> tuple[dict, str]:
    """Run ``command`` under ``/usr/bin/time -v``: its wall, user and system seconds and peak RSS, and its stdout."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    found = {}
    for key, pattern in TIME_FIELDS.items():
        value = re.search(pattern, result.stderr).group(1)
        found[key] = clock(value) if key == "wall_s" else float(value)
    found["peak_rss_mib"] /= 1024
    return found, result.stdout


def alternate(sides: Sequence[str], rounds: int, run: Callable[[str], dict]) -> dict[str, list[dict]]:
    """``run(side)`` for every side, ``rounds`` times, the order rotating each round; results per side."""
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for round_ in range(rounds):
        shift = round_ % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            result = run(side)
            runs[side].append(result)
            print(side, result, flush=True)
    return runs


def summary(runs: dict[str, list[dict]]) -> dict:
    """The command, date, machine, every run and the per-side medians of the numeric fields."""
    medians = {
        side: {k: statistics.median(r[k] for r in results) for k, v in results[0].items() if isinstance(v, float)}
        for side, results in runs.items()
    }
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "runs": runs,
        "medians": medians,
    }
