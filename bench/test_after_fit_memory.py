"""Peak host memory of a decoder fit alone against the same fit followed by its test (``--test_after_fit``).

Each side is a whole ``lit-clf fit`` process (and the rank it launches under FSDP); the peak is the largest sum of
the resident set sizes of the process tree, sampled every 0.1 s with psutil (``/usr/bin/time -v`` gives one
process's peak, not the sum over the ranks of one node). Sides alternate; each runs ``--runs`` times; medians.

    python bench/test_after_fit_memory.py --model models/smollm2-135m-instruct --data-dir ../shared/data \
        --out docs/bench-test-after-fit.json

``--fsdp`` runs two CPU ranks under FSDP (the test suite's CPU variant of Lightning's FSDPStrategy), the path on
which the test builds a model afresh after the fit; with random weights of the model's shapes (loading pretrained
weights on rank 0 and broadcasting them, ``sync_module_states``, needs GPUs).
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
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FSDP = (
    "--trainer.strategy={class_path: tests.decoder.test_fsdp.CPUFSDPStrategy, init_args: {"
    "sharding_strategy: FULL_SHARD, state_dict_type: sharded, "
    "auto_wrap_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer]}}"
)


def command(args: argparse.Namespace, test: bool, root: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "lit_clf",
        "fit",
        "--config",
        str(REPO / "configs/massive/smollm2-135m-intent.yaml"),
        f"--model.init_args.backbone={args.model}",
        f"--data.init_args.data_dir={args.data_dir}",
        "--data.init_args.max_train_examples=64",
        "--data.init_args.max_eval_examples=32",
        "--data.init_args.batch_size=2",
        "--data.init_args.eval_batch_size=16",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.val_check_interval={args.steps}",
        "--trainer.num_sanity_val_steps=0",
        "--model.init_args.decoding=score",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={root}",
        f"--test_after_fit={'true' if test else 'false'}",
        "--overwrite_run=true",  # a rerun of the bench reuses its folders
    ]
    if args.fsdp:  # random weights of the same shapes: rank-0 loading broadcasts with sync_module_states, GPU only
        cmd += ["--trainer.accelerator=cpu", "--trainer.devices=2", "--allow_class_path=tests.decoder.test_fsdp", FSDP]
        cmd += ["--model.init_args.pretrained=false"]
    return cmd


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """The process tree's largest total RSS (GiB) and the wall seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.setdefault("OMP_NUM_THREADS", "1" if "--trainer.devices=2" in cmd else "2")
    start = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {process.returncode}\n{process.stderr.read()[-3000:]}")
    return peak / 2**30, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/smollm2-135m-instruct")
    parser.add_argument("--data-dir", default=os.environ.get("LIT_CLF_DATA", "../shared/data"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-test-after-fit"))
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"fit": [], "fit+test": []}
    for run in range(args.runs):
        for side in ("fit", "fit+test"):  # alternating sides
            root = args.work / f"{'fsdp-' if args.fsdp else ''}{side}-{run}"
            gib, seconds = peak_rss(command(args, side == "fit+test", root))
            results[side].append({"peak_gib": gib, "seconds": seconds})
            print(f"{side} run {run}: peak {gib:.2f} GiB, {seconds:.0f} s", flush=True)
    medians = {side: statistics.median(r["peak_gib"] for r in runs) for side, runs in results.items()}
    summary = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "date": time.strftime("%Y-%m-%d"),
        "fsdp_ranks": 2 if args.fsdp else 1,
        "runs": results,
        "median_peak_gib": medians,
        "ratio": medians["fit+test"] / medians["fit"],
    }
    print(json.dumps({k: summary[k] for k in ("median_peak_gib", "ratio")}))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
