#!/usr/bin/env bash
# The CPU runs of docs/RESULTS.md (Table 3 and WNUT 17), in order, each a lit-clf run from a config in configs/. A step whose run
# folder is already in docs/runs/ (or docs/lr-search/) is skipped, a fit stopped half-way (the session ended)
# resumes from its last.ckpt (--ckpt_path last) and a test from its answer log, so the script resumes after an
# interruption.
# Each finished run's config.yaml, metrics.csv and hparams.yaml (device) are copied to docs/<kind>/<name>/; then
#   lit-clf-report docs/runs --paper
# regenerates the table.
#
# Usage: scripts/table3-cpu.sh [STEP ...]   (no STEP: all of them; scripts/table3-cpu.sh --list names them)
# Needs the real weights (../shared/tools/get_models/get-models models all-mpnet-base-v2 smollm2-135m-instruct) in
# models/, and the data (LIT_CLF_DATA, e.g. ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
MODELS=${MODELS:-models}
SMOL="--model.init_args.backbone $MODELS/smollm2-135m-instruct"
LR=${LR:-1.0e-4}  # the SmolLM2 fine-tuning rate, from the lr-* steps (docs/RESULTS.md)
# Set by scripts/table3-gpu.sh: a run-name suffix, options added to every run and options added to fits.
SUFFIX=${SUFFIX:-}
read -r -a EXTRA <<< "${EXTRA:-}"
read -r -a FIT_EXTRA <<< "${FIT_EXTRA:-}"

# launch SAVE NAME SUBCOMMAND ARGS...: one lit-clf run logged to SAVE/NAME/version_<n>, with the options the GPU
# script adds (EXTRA, and FIT_EXTRA for a fit). A fit stopped before (the session ended) resumes from its last.ckpt;
# a test (every test here is a decoder's) logs its answers to SAVE/NAME/answers.jsonl, so a test stopped before
# resumes from the answers logged so far (lit_clf/decoder/answer_log.py).
launch() {
  local save=$1 name=$2 resume=() extra=("${EXTRA[@]}"); shift 2
  [[ $1 == fit ]] && extra+=("${FIT_EXTRA[@]}")
  if [[ $1 == fit ]] && compgen -G "$save/$name/version_*/checkpoints/last.ckpt" >/dev/null; then
    resume=(--ckpt_path last)
  fi
  [[ $1 == test ]] && resume=(--model.init_args.answer_log "$save/$name/answers.jsonl")
  echo "=== $name: lit-clf $* ${resume[*]} ($(date -u +%FT%TZ))"
  lit-clf "$@" "${extra[@]}" "${resume[@]}" --trainer.logger.init_args.save_dir "$save" --trainer.logger.init_args.name "$name" \
    --trainer.enable_progress_bar false
}

# newest SAVE/NAME: the run folder of NAME's latest run.
newest() { ls -d "$1"/version_* | sort -V | tail -1; }

# run KIND NAME SUBCOMMAND ARGS...: one lit-clf run (launch) logged to runs/[<KIND>/]<NAME>/version_<n> (KIND runs:
# runs/), copied to docs/<KIND>/<NAME>/ when it ends; skipped when docs/<KIND>/<NAME>/ holds it already.
run() {
  local kind=$1 name=$2$SUFFIX save=runs; shift 2
  [[ $kind != runs ]] && save=runs/$kind
  if [[ -f docs/$kind/$name/metrics.csv ]]; then echo "skip $name (docs/$kind/$name exists)"; return; fi
  launch "$save" "$name" "$@"
  local folder
  folder=$(newest "$save/$name")
  mkdir -p "docs/$kind/$name"
  cp "$folder"/{config.yaml,metrics.csv,hparams.yaml} "docs/$kind/$name/"
  echo "=== $name done ($(date -u +%FT%TZ))"
}

# recipe TASK: the config (and prompt) of a decoder task name: slots -> the paper's prompt; slots-inline -> the same
# recipe with the inline slot answer of configs/prompts/ (not the paper's; lit_clf/decoder/inline.py); joint-taskloss,
# joint-inline-taskloss -> with the task-weighted loss (configs/decoder/loss/task.yaml; not the paper's).
recipe() {
  local name=${1%-taskloss}
  local task=${name%-inline}
  RECIPE=(-c "configs/massive/smollm2-135m-$task.yaml" $SMOL)
  if [[ $name == *-inline ]]; then
    local names=$task; [[ $task == joint ]] && names=intent+slots
    RECIPE+=(--model.init_args.prompt_file "configs/prompts/massive-$names-inline-0shot.yaml")
  fi
  if [[ $1 == *-taskloss ]]; then RECIPE+=(-c configs/decoder/loss/task.yaml); fi
}

# best_ckpt NAME: the best checkpoint of the fine-tuning run NAME.
best_ckpt() { newest runs/"$1$SUFFIX" 2>/dev/null | sed 's#$#/checkpoints/best.ckpt#'; }

# refit NAME ARGS...: the fine-tuning run NAME again, without its test, when its checkpoint is gone (runs/ is not
# committed; docs/runs/NAME holds its metrics). The refit's dev metrics are printed beside the committed ones: the
# same seed and config give the same run, so they should agree (docs/RESULTS.md says by how much).
refit() {
  local ckpt; ckpt=$(best_ckpt "$1" || true)
  if [[ -n $ckpt && -f $ckpt ]]; then return; fi
  local name=$1$SUFFIX; shift
  launch runs "$name" fit "$@" --test_after_fit false
  local folder; folder=$(newest "runs/$name")
  python3 - "docs/runs/$name/metrics.csv" "$folder/metrics.csv" <<'PY'
import csv, sys

def dev(path):  # the dev metrics logged at each validation: {step: {metric: value}}
    rows = {}
    for row in csv.DictReader(open(path)):
        values = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
        if values:
            rows.setdefault(row["step"], {}).update(values)
    return rows

committed, refit = (dev(p) for p in sys.argv[1:])
for step in sorted(set(committed) & set(refit), key=int):
    diffs = {k: refit[step][k] - v for k, v in committed[step].items() if k in refit[step]}
    print(f"refit step {step}: " + ", ".join(f"{k} {refit[step][k]:.4f} ({d:+.4f})" for k, d in diffs.items()))
PY
  echo "=== refit $name done ($(date -u +%FT%TZ))"
}

step() {
  case $1 in
    mpnet-joint) run runs massive-all-mpnet-base-v2-intent+slots-ft fit -c configs/massive/mpnet-joint.yaml \
      --model.init_args.backbone "$MODELS/all-mpnet-base-v2" ;;
    minilm-wnut17) run runs wnut17-all-MiniLM-L6-v2-ner-ft fit -c configs/wnut17/minilm-ner.yaml \
      --model.init_args.backbone "${MINILM:-../shared/models/all-MiniLM-L6-v2}" ;;
    smollm2-heads) run runs massive-smollm2-heads-intent+slots-ft fit -c configs/massive/smollm2-135m-heads-joint.yaml \
      --model.init_args.backbone "$MODELS/smollm2-135m-instruct" ;;
    minilm-newsgroups) run runs newsgroups-all-MiniLM-L6-v2-topic20+topic7-ft fit \
      -c configs/newsgroups/minilm-joint.yaml --model.init_args.backbone "${MINILM:-../shared/models/all-MiniLM-L6-v2}" ;;
    lr-*)  # lr-3.0e-5: the intent recipe on the search budget at that rate; lr-slots-inline:1.0e-4: another task
      local task=intent rate=${1#lr-}
      [[ $rate == *:* ]] && task=${rate%%:*} rate=${rate#*:}
      recipe "$task"
      run lr-search "massive-smollm2-$task-lr$rate" fit "${RECIPE[@]}" -c configs/trainer/lr-search.yaml \
        --model.init_args.optimizer.init_args.lr "$rate" ;;
    noft-*)  # noft-intent-0shot-constrained: the released model, tested (w/o FT)
      IFS=- read -r _ task shots decoding <<< "$1"
      local five=(); [[ $shots == 5shot ]] && five=(-c configs/decoder/shots/five.yaml)
      run runs "massive-smollm2-$task-$shots-noft-$decoding" test -c "configs/massive/smollm2-135m-$task.yaml" \
        "${five[@]}" $SMOL --model.init_args.decoding "$decoding" ;;
    ft-*-free|ft-*-score)  # ft-intent-free: the fine-tuned checkpoint tested again with free decoding
      local task=${1#ft-} decoding=${1##*-}; task=${task%-*}
      recipe "$task"
      [[ -f docs/runs/massive-smollm2-$task-0shot-ft-$decoding$SUFFIX/metrics.csv ]] ||
        refit "massive-smollm2-$task-0shot-ft" "${RECIPE[@]}" --model.init_args.optimizer.init_args.lr "$LR"
      run runs "massive-smollm2-$task-0shot-ft-$decoding" test "${RECIPE[@]}" \
        --ckpt_path "$(best_ckpt "massive-smollm2-$task-0shot-ft")" --model.init_args.decoding "$decoding" ;;
    ft-*)  # ft-intent: fine-tune, then test the best checkpoint (constrained); ft-slots-inline: the inline answer
      recipe "${1#ft-}"
      run runs "massive-smollm2-${1#ft-}-0shot-ft" fit "${RECIPE[@]}" --model.init_args.optimizer.init_args.lr "$LR" ;;
    *) echo "unknown step $1" >&2; exit 2 ;;
  esac
}

# In order of what the results need first: the fine-tuned rows (claims a and b), the encoder rows, then the w/o FT rows.
STEPS=(mpnet-joint minilm-wnut17 lr-3.0e-5 lr-1.0e-4 lr-3.0e-4 noft-intent-0shot-constrained noft-intent-0shot-free
  ft-intent ft-intent-free ft-slots ft-slots-free ft-joint ft-joint-free minilm-newsgroups smollm2-heads
  noft-slots-0shot-constrained noft-intent-0shot-score noft-intent-5shot-constrained noft-slots-0shot-free
  noft-joint-0shot-constrained noft-slots-5shot-constrained noft-intent-5shot-free ft-slots-inline ft-slots-inline-free
  ft-joint-inline ft-joint-inline-free noft-joint-0shot-free noft-intent-5shot-score noft-slots-5shot-free
  noft-joint-5shot-constrained noft-joint-5shot-free ft-joint-taskloss ft-joint-inline-taskloss)
if [[ ${1:-} == --list ]]; then printf '%s\n' "${STEPS[@]}"; exit 0; fi
for s in "${@:-${STEPS[@]}}"; do step "$s"; done
