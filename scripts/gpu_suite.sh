#!/usr/bin/env bash
# Every GPU-machine check in one run, each step with its own time limit so one slow step
# cannot eat the others. Results go to $OUT (or bench_out/gpu) as JSON plus a log:
#   1. scripts/gpu_check.sh: torch CUDA parity and PSPNet-ResNet50 fp32 eager vs
#      fp16 + channels_last + CUDA graphs (issue 4, item 6);
#   2. pspnet-ros bench: the default model on torch CPU vs CUDA fp32 vs CUDA fp16+graphs;
#   3. scripts/bench_batch.py: 2 and 4 camera frames batched vs one by one on CUDA (fp16 +
#      CUDA graphs per batch size; issue 12's target: 4 batched >= 1.5x four batch-1 runs);
#   4. scripts/bench_node.py with config/segment.yaml (CPU) and config/cuda.yaml, when rclpy
#      imports (node vs bare Segmenter on a machine with more cores than CI's).
# Usage: scripts/gpu_suite.sh [FRAMES_DIR]   (FRAMES_DIR: CamVid-like PNGs; default ../shared)
# STEPS=gpu runs steps 1-3 only, STEPS=node step 4 only (default: all).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench_out/gpu}"
mkdir -p "$OUT_DIR"
FRAMES="${1:-../shared/data/camvid/val}"
SHARED="$(dirname "$(dirname "$(dirname "$FRAMES")")")"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

STEPS="${STEPS:-all}"
if [ "$STEPS" != node ]; then
  step gpu_check
  PYTHON_SET=1 PYTHON="$PYTHON" timeout 240 scripts/gpu_check.sh --budget-s 2 --profile \
    --frames "$FRAMES"

  step "bench: default model, torch cpu vs cuda"
  timeout 90 "$PYTHON" -m pspnet_ros.cli bench --images "$FRAMES" --frames 10 --repeats 3 \
    --backends torch "torch@channels_last=true" "torch@device=cuda" \
    "torch@device=cuda;fp16=true;channels_last=true;cuda_graphs=true" \
    --json "$OUT_DIR/bench_backends.json"

  step "multi-camera batches: batched vs one by one, cuda fp16 + graphs"
  timeout 90 "$PYTHON" scripts/bench_batch.py --shared "$SHARED" --device cuda \
    --options fp16=true cuda_graphs=true --batches 2,4 --rounds 20 \
    --out "$OUT_DIR/batch_cuda.json"
fi
if [ "$STEPS" = gpu ]; then
  :
elif "$PYTHON" -c 'import rclpy, sensor_msgs.msg' 2>/dev/null; then
  step "node vs bare: config/segment.yaml (torch cpu)"
  timeout 100 "$PYTHON" scripts/bench_node.py --shared "$SHARED" --frames 12 --rounds 3 \
    --overload-rate 120 --overload-frames 240 --out "$OUT_DIR/node_cpu.json"
  step "node vs bare: config/cuda.yaml (torch cuda fp16)"
  timeout 100 "$PYTHON" scripts/bench_node.py --shared "$SHARED" --frames 12 --rounds 3 \
    --params-file config/cuda.yaml --overload-rate 400 --overload-frames 600 \
    --out "$OUT_DIR/node_cuda.json"
else
  step "node benchmarks skipped: rclpy or sensor_msgs does not import here"
fi
step done
