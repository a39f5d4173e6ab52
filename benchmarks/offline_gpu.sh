#!/usr/bin/env bash
# Comparison cells (benchmarks/pretrained_pruning.py) on a GPU machine that has
# JAX with CUDA but neither Keras nor a network.
#
#   bash benchmarks/offline_gpu.sh pack DENSE.keras [CIFAR_DIR]
#       on a machine with a network and this project installed, from the
#       repository root: fills data/gpu/ with the Keras, namex and optree
#       wheels for CPython 3.12 (what such a machine lacks of this
#       project's needs), cifar10_jpeg.npz (from
#       CIFAR_DIR, default $KRP_DATA_DIR) and DENSE re-saved without its
#       optimizer, zip-compressed (a ResNet-56: 7.3 MB -> 3.3 MB). data/ is
#       ignored by git; copy the tree with it (about 63 MB) to the GPU machine
#       (move saved_models/*.keras aside if the copy has a size limit).
#
#   LIMIT=540 bash benchmarks/offline_gpu.sh cell NAME [pretrained_pruning options]
#       on the GPU machine, from the repository root: installs the wheels into
#       /tmp/site (unless Keras is there already), then runs one cell with KERAS_BACKEND=jax, --name NAME,
#       --backup checkpoints/NAME, --out ${RESULTS:-benchmarks/results/gpu},
#       the archive from data/gpu, for at most LIMIT seconds (default: no
#       limit). A cell cut off by the limit resumes when the same command runs
#       again on the same machine (the stripped network and its fine-tune's
#       last epoch are in checkpoints/NAME). With $OUT set, the record and the
#       log are copied there. Exit 0 once the record is written, 124 when cut
#       off by LIMIT.
#
# Example, the full-schedule 75% cell of ResNet-56 (several 9-minute calls;
# benchmarks/results/resnet56_gpu_goal_rows/README.md has both goal cells):
#
#   LIMIT=540 RESULTS=benchmarks/results/resnet56_gpu_goal_rows \
#   bash benchmarks/offline_gpu.sh cell ours+distill_flops75_e120_p2_wd5e-2_s0 \
#       --dense data/gpu/resnet56_cifar10_dense.keras --method ours --distill \
#       --target 0.75 --metric flops --epochs 120 --prune-epochs 2 --weight-decay 5e-2 \
#       --train-limit 0 --test-limit 0 --recalibrate 50 --seed 0 \
#       --callback '{"lambda_rate": 1.0, "gate_prior": "bn_gamma", "cost_exponent": 0.5}'
set -euo pipefail
BUNDLE=data/gpu
WHEELS=("keras==3.15.1" "namex==0.1.0" "optree==0.20.0")

pack() {
  local dense=${1:?pack needs the dense model: pack DENSE.keras [CIFAR_DIR]}
  local cifar=${2:-${KRP_DATA_DIR:?pass CIFAR_DIR or set KRP_DATA_DIR}}
  mkdir -p "$BUNDLE/wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$BUNDLE/wheels" "${WHEELS[@]}"
  install -m 644 "$cifar/cifar10_jpeg.npz" "$BUNDLE/"
  python3 - "$dense" "$BUNDLE/$(basename "$dense")" <<'EOF'
import sys, tempfile, zipfile
import keras
source, target = sys.argv[1:]
with tempfile.TemporaryDirectory() as scratch:
    plain = f"{scratch}/model.keras"
    keras.saving.load_model(source, compile=False).save(plain)
    with zipfile.ZipFile(plain) as read, \
            zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as write:
        for item in read.infolist():
            write.writestr(item.filename, read.read(item.filename))
EOF
  du -sh "$BUNDLE"
}

cell() {
  local name=${1:?cell needs a name: cell NAME [options]}
  shift
  local results=${RESULTS:-benchmarks/results/gpu}
  if ! python3 -c "import keras" 2> /dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site "$BUNDLE"/wheels/*.whl
  fi
  mkdir -p logs "$results"
  local status=0
  PYTHONPATH=/tmp/site:. KERAS_BACKEND=jax KRP_DATA_DIR=$BUNDLE PYTHONUNBUFFERED=1 \
    timeout "${LIMIT:-0}" python3 benchmarks/pretrained_pruning.py --name "$name" \
      --backup "checkpoints/$name" --out "$results" --verbose 2 "$@" \
      >> "logs/$name.log" 2>&1 || status=$?
  if [ -n "${OUT:-}" ]; then
    cp "logs/$name.log" "$OUT/" || true
    [ -f "$results/$name.json" ] && cp "$results/$name.json" "$OUT/"
  fi
  tail -n 5 "logs/$name.log"
  return "$status"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  cell) shift; cell "$@" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2 ;;
esac
