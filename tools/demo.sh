#!/usr/bin/env bash
# The main job on the bundled sample: every step is the command a user would type.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=demo-output
mkdir -p "$OUT"
step() { echo; echo "\$ $*"; "$@"; }

step "$PY" data/prepare_mnist_sample.py --out data/mnist-sample
step "$PY" tools/im2rec.py --mnist "$OUT/mnist" data/mnist-sample
step "$PY" -m lcnn_gluon.data "$OUT/mnist_train.rec" --dataset mnist --batch-size 128
step "$PY" -m lcnn_gluon.data "$OUT/mnist_val.rec" --dataset mnist --batch-size 128 --val
