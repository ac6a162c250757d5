#!/usr/bin/env bash
# The prepared accelerator check: one command on a machine with a GPU or TPU (under 8 minutes on one H100).
#
#   GPU: pip install -e ".[test]" && pip install -U "jax[cuda12]==$(python -c 'import jax; print(jax.__version__)')"
#   TPU: pip install -e ".[test,tpu]"
#   bash scripts/accelerator_check.sh [--out accelerator_check.json] [--ref_dir ../shared/upstream_ref]
#   bash scripts/accelerator_check.sh --cpu-smoke     # the same path at tiny sizes on a CPU (CI runs this)
#
# It prints the devices, runs the parity suite on the device in float32, trains the tiny config 50 steps in
# bfloat16 and float32 (the loss gap), selects the attention implementation for the backend (cuDNN's fused
# kernel on a GPU, the Pallas splash kernel on a TPU, when it matches XLA's and is not slower) and benchmarks `small` in bfloat16 (train step, sampler RTF,
# VAE decode) with MFU against the chip's peak, into one JSON (scripts/accelerator_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/accelerator_check.py "$@"
