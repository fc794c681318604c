#!/usr/bin/env bash
# The `stc experiment` runs behind the rows of benchmarks/RESULTS.md.
#
#   bash benchmarks/experiments.sh [FIRST [LAST]]     # run steps FIRST..LAST (default: all)
#
# Each step merges its rows into benchmarks/results/<dataset>-<model>.json and rewrites results-table.md; a step
# re-run replaces only its own methods' rows. Work files (activation stores, fine-tuned checkpoints) go to
# $STC_EXPERIMENT_WORK (default /tmp/stc-experiments). Needs the README set-up (.venv) plus the extras
# (`.venv/bin/pip install -e ".[setfit,smollm2]"`) for the SetFit and SmolLM2 rows; on 2 CPU cores the whole list
# takes well over three hours. RESULTS.md says which steps ran, when, and in what order.
set -euo pipefail
cd "$(dirname "$0")/.."
STC="${STC:-.venv/bin/stc}"
WORK="${STC_EXPERIMENT_WORK:-/tmp/stc-experiments}"
OUT=benchmarks/results
first="${1:-1}"
last="${2:-99}"

steps=(
  # 1. MiniLM on MR: STC with its default search and every training sentence, beside the embedding.
  "--dataset mr --model minilm --methods stc,embedding"
  # 2. MiniLM on BBC News (articles cut to 128 tokens): every method but ICL.
  "--dataset bbc-news --model minilm --methods stc,embedding,finetune,stc-finetuned,setfit --max-length 128 --setfit-max-steps 200"
  # 3. MiniLM on tweets: STC and embedding on all 26,039 training tweets ...
  "--dataset tweets --model minilm --methods stc,embedding"
  # 4. ... fine-tuning, STC on the fine-tuned model and SetFit on a stratified 5,000 of them.
  "--dataset tweets --model minilm --methods finetune,stc-finetuned,setfit --train-limit finetune=5000,stc-finetuned=5000,setfit=5000 --setfit-max-steps 200"
  # 5. SmolLM2 on tweets: STC and its last-token embedding on 2,000 training tweets, ICL; all 7,439 test tweets.
  "--dataset tweets --model smollm2 --methods stc,embedding,icl --train-limit stc=2000,embedding=2000"
  # 6. SmolLM2 on BBC News (128 tokens): STC, embedding and ICL on every article.
  "--dataset bbc-news --model smollm2 --methods stc,embedding,icl --max-length 128"
  # 7. MiniLM on MR: fine-tuning, STC on the fine-tuned model and SetFit on every training sentence.
  "--dataset mr --model minilm --methods finetune,stc-finetuned,setfit --setfit-max-steps 200"
  # 8. SmolLM2 on MR: STC, embedding and ICL on every sentence ...
  "--dataset mr --model smollm2 --methods stc,embedding,icl"
  # 9. ... fine-tuning SmolLM2 and STC on the fine-tuned SmolLM2 on a stratified 2,000 training sentences ...
  "--dataset mr --model smollm2 --methods finetune,stc-finetuned --train-limit finetune=2000,stc-finetuned=2000"
  # 10. ... and SetFit on SmolLM2 (mean pooling) on the same 2,000 (on 2 cores: unfinished after 27 minutes).
  "--dataset mr --model smollm2 --methods setfit --train-limit setfit=2000 --setfit-max-steps 200"
)

for i in "${!steps[@]}"; do
  n=$((i + 1))
  if (( n < first || n > last )); then continue; fi
  echo "[experiments.sh] step $n: stc experiment ${steps[$i]}" >&2
  # shellcheck disable=SC2086
  "$STC" experiment --quiet ${steps[$i]} --out "$OUT" --work-dir "$WORK"
done
