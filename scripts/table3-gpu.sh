#!/usr/bin/env bash
# The SmolLM2 rows on one CUDA GPU: table3-cpu.yaml's steps with configs/experiments/profiles/gpu.yaml ([--until S]).
cd "$(dirname "$0")/.." && exec lit-clf-experiments run table3-cpu --profile gpu "$@"
