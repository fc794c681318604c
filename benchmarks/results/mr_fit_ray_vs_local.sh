set -e
export PYTHONPATH=/work/wt-14/src TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
date
/usr/bin/time -f "local fit wall %e s" nice $PY -m stc fit --data mr --limit 800 --model minilm --store-dir /tmp/w14/mrfit/s-local --out /tmp/w14/mrfit/local --quiet
date
/usr/bin/time -f "ray fit wall %e s" nice $PY -m stc fit --data mr --limit 800 --model minilm --store-dir /tmp/w14/mrfit/s-ray --out /tmp/w14/mrfit/ray --quiet --engine ray --workers 2
date
cmp /tmp/w14/mrfit/local/arrays.safetensors /tmp/w14/mrfit/ray/arrays.safetensors && echo "MODEL ARRAYS IDENTICAL"
for d in s-local s-ray; do (cd /tmp/w14/mrfit/$d/*/ && cat meta.json arrays/*.npy | sha256sum); done
