# `stc fit` on MR (800 texts per split) as is and with --engine ray --workers 2; are model and store the same?
set -e
out=$(mktemp -d)
export TOKENIZERS_PARALLELISM=false
date
/usr/bin/time -f "local fit wall %e s" nice stc fit --data mr --limit 800 --model minilm --store-dir "$out/s-local" --out "$out/local" --quiet
date
/usr/bin/time -f "ray fit wall %e s" nice stc fit --data mr --limit 800 --model minilm --store-dir "$out/s-ray" --out "$out/ray" --quiet --engine ray --workers 2
date
cmp "$out/local/arrays.safetensors" "$out/ray/arrays.safetensors" && echo "MODEL ARRAYS IDENTICAL"
for d in s-local s-ray; do (cd "$out"/$d/*/ && cat meta.json arrays/*.npy | sha256sum); done
