"""How long `lit-clf` takes to answer: the quick answers (top-level help, a mistyped subcommand, a missing config)
against a subcommand's `--help` (which imports torch, Lightning and transformers to list the model's options).
Whole processes, the commands in turn, each `--repeats` times; medians.

    python bench/cli_startup.py --out docs/bench-cli-startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "lit-clf --help": ["--help"],
    "lit-clf fti (mistyped)": ["fti"],
    "lit-clf fit -c missing.yaml": ["fit", "-c", "missing.yaml"],
    "lit-clf fit --help": ["fit", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench-cli-startup.json")
    parser.add_argument("--model", default=None, help="Unused: every command here answers before a model is read.")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lit_clf", *argv], cwd=REPO, capture_output=True)
            seconds[name].append(round(time.perf_counter() - start, 3))
    result = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "seconds": seconds,
        "median_s": {name: statistics.median(values) for name, values in seconds.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, value in result["median_s"].items():
        print(f"{name}: {value:.2f} s")


if __name__ == "__main__":
    main()
