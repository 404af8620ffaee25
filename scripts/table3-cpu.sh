#!/usr/bin/env bash
# The CPU runs of docs/RESULTS.md, as data in configs/experiments/table3-cpu.yaml (its header says how they resume).
cd "$(dirname "$0")/.." && exec lit-clf-experiments run table3-cpu "$@"
