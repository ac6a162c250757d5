#!/usr/bin/env bash
# The demo, end to end on a CPU: install, build the demo corpus, train the demo VAE, train a small UniFlow on
# all seven tasks, generate held-out inputs of every task with `python -m uniflow_jax.sample`, and report
# per-task figures that show what was learned.
#
#   bash scripts/demo.sh [OUT_DIR]          (default: demo_out; about 15 minutes on 2 cores)
#
# Steps can be shortened for a smoke run: VAE_STEPS=20 FLOW_STEPS=20 bash scripts/demo.sh /tmp/smoke
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo_out}
VAE_STEPS=${VAE_STEPS:-}
FLOW_STEPS=${FLOW_STEPS:-}
PER_TASK=${PER_TASK:-4}
start=$(date +%s)
stamp() { echo "[demo $(( $(date +%s) - start )) s] $*"; }

if [ ! -x .venv/bin/python ]; then
  stamp "installing into .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[video,eval]"
fi
# shellcheck disable=SC1091
source .venv/bin/activate
if ! command -v espeak-ng >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  stamp "installing espeak-ng (real synthetic speech; without it the corpus uses a numpy synthesiser)"
  apt-get install -y -qq espeak-ng >/dev/null 2>&1 || apt-get update -qq >/dev/null && apt-get install -y -qq espeak-ng >/dev/null || true
fi
mkdir -p "$OUT"
DATA="$OUT/demo_data"

stamp "building the demo corpus in $DATA"
python -m uniflow_jax.data.demo --out "$DATA"

stamp "training the demo VAE"
python -m uniflow_jax.train --config "configs/vae_demo.py:$DATA" --workdir "$OUT/vae" \
  ${VAE_STEPS:+--config.train.num_steps=$VAE_STEPS}
python -m uniflow_jax.export --workdir "$OUT/vae" --out "$OUT/vae.safetensors"

stamp "encoding the corpus once with the frozen encoders (latent cache)"
VAE="--config.model.frozen_weights.vae=$OUT/vae.safetensors"
python -m uniflow_jax.data.cache --config "configs/demo.py:$DATA" --out "$OUT/cache" "$VAE"

stamp "training UniFlow on all seven tasks"
python -m uniflow_jax.train --config "configs/demo.py:$DATA" --workdir "$OUT/uniflow" "$VAE" \
  --config.data.cache="$OUT/cache" ${FLOW_STEPS:+--config.train.num_steps=$FLOW_STEPS}

stamp "generating $PER_TASK held-out inputs per task"
python -m uniflow_jax.demo_eval requests --corpus "$DATA" --out "$OUT/requests" --per_task "$PER_TASK"
python -m uniflow_jax.sample --workdir "$OUT/uniflow" --batch "$OUT/requests/requests.jsonl" --out_dir "$OUT/generated"

stamp "evaluating"
python -m uniflow_jax.demo_eval report --corpus "$DATA" --generated "$OUT/generated" --out "$OUT/report.json" \
  --per_task "$PER_TASK"
stamp "scoring every task with python -m uniflow_jax.evaluate"
python -m uniflow_jax.demo_eval references --corpus "$DATA" --out "$OUT/references" --per_task "$PER_TASK"
# T2A/T2M/V2A need an audio model for FD/KL/IS; none can be downloaded here, so a TOY spectral-statistics one
# exercises the command (its figures compare spectra, not what a trained classifier hears).
python scripts/make_toy_audio_model.py "$OUT/toy_audio.onnx"
for task in se sr svs tts t2a t2m v2a; do
  model=()
  case $task in t2a|t2m|v2a) model=(--audio_model "$OUT/toy_audio.onnx") ;; esac
  python -m uniflow_jax.evaluate --task "$task" --generated "$OUT/generated/$task" \
    --reference "$OUT/references/$task.jsonl" --json "$OUT/metrics/$task.json" "${model[@]}"
done
stamp "done: wavs in $OUT/generated, report in $OUT/report.json, metrics in $OUT/metrics, TensorBoard logs in $OUT/*/tensorboard"
