#!/usr/bin/env bash
# Issue 36's speed measurements in one run on one machine (a benchmark, not a test):
#   1. `pspnet-ros bench`: backend auto (its candidates, its choice), each backend of the
#      shipped model, the int8 model of BASE (the model when the issue was filed: 281x377,
#      output stride 8) and Coral's DeepLab-slim, with the work around inference and the
#      inference time per input pixel;
#   2. `scripts/bench_node.py`: the node of BASE (its segment.yaml, then its auto.yaml) and
#      today's node (segment.yaml: backend auto), alternating, on CamVid's 480x360 frames.
# Usage: scripts/bench_speed.sh [OUT]   (default bench_out/speed; needs `make venv`, the git
# history for BASE, and ../shared for CamVid and the Coral model)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/bench_out/speed}" && cd "${1:-$ROOT/bench_out/speed}" && pwd)
BASE=${BASE:-5f89ec1}
PY=${PY:-$ROOT/.venv/bin/python}
ROUNDS=${ROUNDS:-2}
M=$ROOT/models/pspnet_mobilenetv2_camvid
CORAL=$ROOT/models/third_party/coral_deeplab_mobilenet_edgetpu_slim_cityscapes.yaml

# The CPU as the project reads it everywhere (core/machine.py: auto's cache key, bench).
(cd "$ROOT" && "$PY" -c 'from pspnet_ros.core.machine import cpu_info; i = cpu_info()
print("model name:", i["model"]); print("flags:", " ".join(i["flags"]))') > "$OUT/cpu.txt"
date -u '+%Y-%m-%d %H:%M UTC' >> "$OUT/cpu.txt"

# BASE's int8 model under a name of its own (the bench labels rows by card file name).
mkdir -p "$OUT/base_model"
git -C "$ROOT" show "$BASE:models/pspnet_mobilenetv2_camvid_int8.tflite" \
    > "$OUT/base_model/base_int8.tflite"
git -C "$ROOT" show "$BASE:models/pspnet_mobilenetv2_camvid_int8.tflite.yaml" \
    | sed 's/^weights: .*/weights: base_int8.tflite/' > "$OUT/base_model/base_int8.tflite.yaml"

cd "$ROOT"
"$PY" -m pspnet_ros.cli bench --backends auto torch 'torch@channels_last=true' \
    "onnxruntime:$M.onnx.yaml" "tflite:${M}_int8.tflite.yaml" \
    "tflite:$OUT/base_model/base_int8.tflite.yaml" "tflite:$CORAL" \
    --frames 10 --repeats 3 --warmup 5 --json "$OUT/bench.json" | tee "$OUT/bench.md"

# BASE's tree beside this one, for its node.
if [ ! -d "$OUT/base_tree" ]; then
    git -C "$ROOT" worktree add --detach "$OUT/base_tree" "$BASE" > /dev/null
fi
node() {   # node NAME TREE PARAMS; run in TREE: the node process imports pspnet_ros from there
    (cd "$2" && "$PY" scripts/bench_node.py --params-file "$3" --overload-rate 100 \
        --overload-frames 300 --out "$OUT/node_$1.json" > "$OUT/node_$1.md" 2>&1) \
        || echo "bench_node $1 failed: see $OUT/node_$1.md"
    tail -n 8 "$OUT/node_$1.md"
}
for r in $(seq 1 "$ROUNDS"); do
    node "base_segment_$r" "$OUT/base_tree" "$OUT/base_tree/config/segment.yaml"
    node "base_auto_$r" "$OUT/base_tree" "$OUT/base_tree/config/auto.yaml"
    node "new_$r" "$ROOT" "$ROOT/config/segment.yaml"
done
git -C "$ROOT" worktree remove --force "$OUT/base_tree"
echo "results in $OUT"
