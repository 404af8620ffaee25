"""`lit-clf plan` for every paper row: the 4 Llama models x strategies (FSDP1, FSDP2, the 70B recipes), fine-tuning
on the longest prompts (20NG five-shot) and the w/o FT test of the released models, as one Markdown table.

Each row is the exact `lit-clf plan` command of the configs in configs/decoder and configs/trainer (no weights are
read: the paper's model configs ship with lit_clf), run in this process.

    python bench/plan_table.py --out docs/bench-plan.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import re
from datetime import date
from pathlib import Path

from lit_clf.run.cli import main

REPO = Path(__file__).resolve().parents[1]
TASK = "configs/task/newsgroups-topic20.yaml"  # 20NG five-shot: prompts fill each model's window
FT = {"Llama2-7B": "llama2-7b", "Llama3-8B": "llama3-8b", "Llama2-70B": "llama2-70b", "Llama3-70B": "llama3-70b"}
NO_FT = {
    "Llama2-7B": "llama2-7b-chat",
    "Llama3-8B": "llama3-8b-instruct",
    "Llama2-70B": "llama2-70b-chat",
    "Llama3-70B": "llama3-70b-instruct",
}
STRATEGIES = {
    "FSDP1 (fsdp-8xa100)": ("configs/trainer/fsdp-8xa100.yaml", ()),
    "FSDP1 + CPU offload": ("configs/trainer/fsdp-8xa100.yaml", ("--trainer.strategy.init_args.cpu_offload=true",)),
    "FSDP2 (fsdp2-8xa100)": ("configs/trainer/fsdp2-8xa100.yaml", ()),
    "FSDP2 70B recipe (fsdp2-8xa100-70b)": ("configs/trainer/fsdp2-8xa100-70b.yaml", ()),
    "FSDP2 2 nodes (fsdp2-2x8xa100)": ("configs/trainer/fsdp2-2x8xa100.yaml", ()),
}


def plan(model: str, trainer: str, extra: tuple[str, ...], stage: str) -> dict:
    args = ["plan", "-c", "configs/decoder/base.yaml", "-c", f"configs/decoder/model/{model}.yaml"]
    args += ["-c", "configs/decoder/shots/five.yaml", "-c", TASK, "-c", trainer, *extra, f"--plan.stage={stage}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(args)
    lines = out.getvalue().strip().splitlines()
    peak = re.search(r"peak per device: ([\d,.]+) GiB of ([\d,.]+) GiB; host: ([\d,.]+) GiB", lines[-1])
    verdict = lines[-2] if lines[-2].startswith("does not fit") else "fits"
    return {
        "command": "lit-clf " + " ".join(args),
        "peak_gib": float(peak.group(1).replace(",", "")),
        "device_gib": float(peak.group(2).replace(",", "")),
        "host_gib": float(peak.group(3).replace(",", "")),
        "verdict": verdict,
    }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench-plan.json")
    parser.add_argument("--models", nargs="+", choices=sorted(FT), default=sorted(FT), help="Table 3 models to plan.")
    args = parser.parse_args()
    rows = []
    for row, model in FT.items():
        if row not in args.models:
            continue
        for name, (trainer, extra) in STRATEGIES.items():
            if "70B" in name and "70B" not in row:
                continue
            rows.append({"row": f"{row} Five-shot w/ FT", "strategy": name, **plan(model, trainer, extra, "fit")})
    for row, model in NO_FT.items():
        if row not in args.models:
            continue
        for name in ("FSDP1 (fsdp-8xa100)", "FSDP2 (fsdp2-8xa100)"):
            trainer, extra = STRATEGIES[name]
            rows.append({"row": f"{row} Five-shot w/o FT", "strategy": name, **plan(model, trainer, extra, "test")})
    result = {"date": str(date.today()), "machine": platform.node() or "unknown", "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| Table 3 row | strategy | peak per device (GiB of 80) | host per node (GiB) | verdict |")
    print("|---|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['row']} | {r['strategy']} | {r['peak_gib']:,.1f} | {r['host_gib']:,.1f} | {r['verdict']} |")


if __name__ == "__main__":
    main_cli()
