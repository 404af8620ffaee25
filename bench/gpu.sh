#!/usr/bin/env bash
# Every GPU check and measurement (docs/BENCHMARKS.md, the GPU rows of docs/RESULTS.md) on one CUDA GPU, one command:
#
#   bench/gpu.sh [PART ...]   PART: tests llama8b table3 eval (default: all four, in that order)
#
# tests    the CUDA test cases (pytest -m gpu), log in $LOGS/tests.log
# llama8b  bench/llama8b_full_ft.py: Llama-3-8B-shaped full fine-tuning, peak memory, tokens/s, MFU
#          -> docs/bench-llama8b.json
# table3   lit-clf-experiments run table3-cpu --profile gpu [$TABLE3_STEPS]: the SmolLM2 rows on the full MASSIVE
#          splits (configs/experiments/profiles/gpu.yaml; its steps unless TABLE3_STEPS) -> docs/runs/<name>-gpu/
# eval     bench/shared_prefix.py on the whole test split: free / constrained / score decoding, with and without the
#          cached prompt prefix, consolidated vs dual (intent runs on the fine-tuned intent-gpu checkpoint if there
#          is one) -> docs/bench-shared-prefix-gpu.json
#
# Env: MODELS (holds smollm2-135m-instruct; default models), LLAMA3_TOKENIZER (default meta-llama/Meta-Llama-3-8B),
# LIT_CLF_DATA (the data folder), UNTIL (epoch seconds: no part starts after it and table3 stops its step at it),
# LOGS (default runs/gpu-logs), PYTHON (default python3), TESTS_K (pytest -k for the tests part), LLAMA8B_ARGS (more
# options for bench/llama8b_full_ft.py), EVAL_EXAMPLES (default 2974).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MODELS=${MODELS:-models}
LOGS=${LOGS:-runs/gpu-logs}
UNTIL=${UNTIL:-$(($(date +%s) + 86400))}
TABLE3_STEPS=${TABLE3_STEPS:-}
mkdir -p "$LOGS"
left() { echo $((UNTIL - $(date +%s))); }

part() {
  if (($(left) < 30)); then echo "=== skip $1: no time left"; return; fi
  echo "=== $1 ($(date -u +%FT%TZ))"
  case $1 in
    tests) timeout "$(left)" "$PY" -m pytest -q -m gpu -n 0 -p no:cacheprovider ${TESTS_K:+-k "$TESTS_K"} tests/gpu 2>&1 | tee "$LOGS/tests.log" ;;
    llama8b) timeout "$(left)" "$PY" bench/llama8b_full_ft.py --tokenizer "${LLAMA3_TOKENIZER:-meta-llama/Meta-Llama-3-8B}" \
      ${LIT_CLF_DATA:+--data-dir "$LIT_CLF_DATA"} ${LLAMA8B_ARGS:-} --out docs/bench-llama8b.json 2>&1 | tee "$LOGS/llama8b.log" ;;
    table3) "$PY" -m lit_clf.run.experiments run table3-cpu --profile gpu --until "$UNTIL" --var "models=$MODELS" \
      $TABLE3_STEPS 2>&1 | tee -a "$LOGS/table3.log" ;;
    eval)
      local ckpt
      ckpt=$(ls -d runs/massive-smollm2-intent-0shot-ft-gpu/version_*/checkpoints/best.ckpt 2>/dev/null | sort -V | tail -1)
      timeout "$(left)" "$PY" bench/shared_prefix.py --model "$MODELS/smollm2-135m-instruct" --parts eval --device cuda \
        --dtype bfloat16 --eval-batch-size 128 --eval-examples "${EVAL_EXAMPLES:-2974}" ${ckpt:+--intent-ckpt "$ckpt"} \
        ${LIT_CLF_DATA:+--data-dir "$LIT_CLF_DATA"} --out docs/bench-shared-prefix-gpu.json 2>&1 | tee "$LOGS/eval.log" ;;
    *) echo "unknown part $1" >&2; return 2 ;;
  esac
}

for p in "${@:-tests llama8b table3 eval}"; do
  for q in $p; do part "$q"; done
done
