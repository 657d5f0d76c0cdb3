#!/usr/bin/env bash
# GPU check for the torch backend: fp16 parity and fp32-eager vs fp16+channels_last+CUDA-graphs
# throughput of PSPNet-ResNet50 (473x473, 512x1024; batch 1 and 4). Writes gpu_check.json to
# $OUT when set. Exits 0 with a clear message when no CUDA device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON_SET:-}" ]; then PYTHON=.venv/bin/python; fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "nvidia-smi not found: no NVIDIA driver on this machine"
fi
exec timeout 570 "$PYTHON" scripts/gpu_check.py "$@"
