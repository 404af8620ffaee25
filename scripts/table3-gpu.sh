#!/usr/bin/env bash
# The SmolLM2 decoder rows of docs/RESULTS.md on one CUDA GPU: the steps of scripts/table3-cpu.sh with the full MASSIVE
# training split (11,514 utterances), EPOCHS passes over it (default 2), bf16-mixed, one validation on the full dev
# split per epoch, and evaluation batches of EVAL_BATCH (default 128). Run names end in -gpu (docs/runs/<name>-gpu/),
# and each run's hparams.yaml names the GPU.
#
# Usage: scripts/table3-gpu.sh [--until EPOCH_SECONDS] STEP...   (STEP as in scripts/table3-cpu.sh --list)
# --until: start no step after that time and stop the running one at it (a fit stopped there resumes from its
# last.ckpt on the next call, a test restarts); a step that fails does not stop the next.
# Needs the real weights in MODELS (default models/; ../shared/tools/get_models/get-models models smollm2-135m-instruct)
# and LIT_CLF_DATA. E.g. scripts/table3-gpu.sh ft-intent ft-slots ft-joint ft-intent-free noft-intent-0shot-constrained
set -uo pipefail
cd "$(dirname "$0")/.."
until_s=
if [[ ${1:-} == --until ]]; then until_s=$2; shift 2; fi
export SUFFIX=-gpu
export EXTRA="--trainer.accelerator gpu --trainer.devices 1 --trainer.precision bf16-mixed --data.init_args.eval_batch_size ${EVAL_BATCH:-128}"
export FIT_EXTRA="--data.init_args.max_train_examples null --trainer.max_epochs ${EPOCHS:-2} --trainer.val_check_interval 1.0"
for s in "$@"; do
  if [[ -n $until_s ]]; then
    left=$((until_s - $(date +%s)))
    if ((left < 30)); then echo "=== stop: no time left for $s"; break; fi
    timeout --signal=INT --kill-after=30 "$left" scripts/table3-cpu.sh "$s" || echo "=== $s: exit $?"
  else
    scripts/table3-cpu.sh "$s" || echo "=== $s: exit $?"
  fi
done
