#!/usr/bin/env bash
# The demo, end to end on a CPU: install, build the demo corpus, measure the demo codec (a VAE trained ahead of
# time and shipped in the package; RETRAIN_CODEC=1 trains it from scratch first), train a small UniFlow on all
# seven tasks, generate held-out inputs of every task with `python -m uniflow_jax.sample`, and report per-task
# bars that show what was learned (OUT/report.html to look and listen, OUT/report.json).
#
#   bash scripts/demo.sh [OUT_DIR]          (default: demo_out; about 15 minutes on 2 cores)
#
# It runs from any directory (OUT_DIR is taken relative to where you are) and installs the package with its
# `demo` extra into the checkout's .venv when that environment lacks it. DEMO_VENV=DIR uses another
# environment (CI: a non-editable install of the wheel). Steps and corpus (CORPUS=TRAIN:VAL clips per task,
# default 64:16) can be shortened for a smoke run (VAE_STEPS: the codec's steps when RETRAIN_CODEC=1):
#   FLOW_STEPS=20 PER_TASK=2 CORPUS=8:2 bash scripts/demo.sh /tmp/smoke
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-demo_out}
case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac
VENV=${DEMO_VENV:-$REPO/.venv}
VAE_STEPS=${VAE_STEPS:-}
FLOW_STEPS=${FLOW_STEPS:-}
PER_TASK=${PER_TASK:-4}
CORPUS=${CORPUS:-64:16}
start=$(date +%s)
stamp() { echo "[demo $(($(date +%s) - start)) s] $*"; }
refuse() {
  echo "demo: $*" >&2
  exit 1
}

[[ $PER_TASK =~ ^[0-9]+$ ]] && [ "$PER_TASK" -ge 2 ] ||
  refuse "PER_TASK=$PER_TASK: give 2 or more held-out items per task (FD/KL compare sets of at least two)"
[[ $CORPUS =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] && [ "${BASH_REMATCH[2]}" -ge "$PER_TASK" ] ||
  refuse "CORPUS=$CORPUS: give TRAIN:VAL clips per task, at least PER_TASK=$PER_TASK of them held out (VAL)"
NUM_TRAIN=${BASH_REMATCH[1]}
NUM_VAL=${BASH_REMATCH[2]}
# What the demo cannot install itself: a Python >= 3.11 that can make virtual environments.
if [ ! -x "$VENV/bin/python" ]; then
  command -v python3 >/dev/null || refuse "python3 is not on PATH; install Python >= 3.11 first"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    refuse "python3 is $(python3 -c 'import platform; print(platform.python_version())'); the demo needs >= 3.11"
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    refuse "python3 cannot create virtual environments; install its venv module (Debian/Ubuntu: apt-get install python3-venv)"
  stamp "creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import uniflow_jax, av, PIL, pesq, pystoi, speechmos, onnx, onnxruntime' 2>/dev/null; then
  stamp "installing uniflow_jax with its demo extra into $VENV"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -e "$REPO[demo]"
fi
# espeak-ng gives real synthetic speech; without it the corpus falls back to a numpy synthesiser.
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    stamp "installing espeak-ng"
    { apt-get install -y -qq espeak-ng || { apt-get update -qq && apt-get install -y -qq espeak-ng; }; } >/dev/null 2>&1 ||
      echo "demo: espeak-ng could not be installed; the corpus uses the numpy speech synthesiser"
  else
    echo "demo: espeak-ng is not installed (and this user cannot install it); the corpus uses the numpy speech synthesiser"
  fi
fi
run() { "$PY" -m "$@"; }
mkdir -p "$OUT"
DATA="$OUT/demo_data"

stamp "building the demo corpus in $DATA"
run uniflow_jax.demo.corpus --out "$DATA" --num_train "$NUM_TRAIN" --num_val "$NUM_VAL"

if [ "${RETRAIN_CODEC:-0}" = 1 ]; then
  stamp "training the demo codec from scratch (RETRAIN_CODEC=1: scripts/train_demo_codec.sh, about 35 minutes)"
  PYTHON="$PY" CODEC_STEPS=$VAE_STEPS CODEC_CORPUS=${CODEC_CORPUS:-$NUM_TRAIN:$PER_TASK} \
    bash "$REPO/scripts/train_demo_codec.sh" "$OUT/codec_training"
  cp "$OUT/codec_training/demo_codec.safetensors" "$OUT/vae.safetensors"
else
  stamp "the demo codec: trained ahead of time (scripts/train_demo_codec.sh), shipped in the package"
  "$PY" -c 'import shutil, sys; from uniflow_jax import resources; shutil.copy(resources.path("demo_codec.safetensors"), sys.argv[1])' \
    "$OUT/vae.safetensors"
fi
stamp "the codec's round trip of held-out clips (the ceiling of every generated figure)"
run uniflow_jax.demo.codec --config "$REPO/configs/demo.py:$DATA" --vae "$OUT/vae.safetensors" \
  --per_task "$PER_TASK" --json "$OUT/codec.json" --out_dir "$OUT/codec"

stamp "encoding the corpus once with the frozen encoders (latent cache)"
VAE="--config.model.frozen_weights.vae=$OUT/vae.safetensors"
run uniflow_jax.data.cache --config "$REPO/configs/demo.py:$DATA" --out "$OUT/cache" "$VAE"

stamp "training UniFlow on all seven tasks"
run uniflow_jax.train --config "$REPO/configs/demo.py:$DATA" --workdir "$OUT/uniflow" "$VAE" \
  --config.data.cache="$OUT/cache" ${FLOW_STEPS:+--config.train.num_steps=$FLOW_STEPS}

stamp "generating $PER_TASK held-out inputs per task"
run uniflow_jax.demo.report requests --corpus "$DATA" --out "$OUT/requests" --per_task "$PER_TASK"
run uniflow_jax.sample --workdir "$OUT/uniflow" --batch "$OUT/requests/requests.jsonl" --out_dir "$OUT/generated"

stamp "evaluating"
run uniflow_jax.demo.report report --corpus "$DATA" --generated "$OUT/generated" --out "$OUT/report.json" \
  --per_task "$PER_TASK" --codec "$OUT/codec"
stamp "scoring every task with python -m uniflow_jax.evaluate"
run uniflow_jax.demo.report references --corpus "$DATA" --out "$OUT/references" --per_task "$PER_TASK"
# T2A/T2M/V2A need an audio model for FD/KL/IS; none can be downloaded here, so a TOY spectral-statistics one
# exercises the command (its figures compare spectra, not what a trained classifier hears).
"$PY" "$REPO/scripts/make_toy_audio_model.py" "$OUT/toy_audio.onnx"
for task in se sr svs tts t2a t2m v2a; do
  model=()
  case $task in t2a | t2m | v2a) model=(--audio_model "$OUT/toy_audio.onnx") ;; esac
  run uniflow_jax.evaluate --task "$task" --generated "$OUT/generated/$task" \
    --reference "$OUT/references/$task.jsonl" --json "$OUT/metrics/$task.json" "${model[@]}"
done
stamp "done: wavs in $OUT/generated, report in $OUT/report.json, metrics in $OUT/metrics, TensorBoard logs in $OUT/*/tensorboard"
