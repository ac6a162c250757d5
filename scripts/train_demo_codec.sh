#!/usr/bin/env bash
# The demo's codec, trained ahead of time: builds a demo corpus of its own (seed 1: none of the demo's clips),
# trains the demo VAE on it with configs/demo_codec.py, exports it and measures its round trip on held-out clips.
#
#   bash scripts/train_demo_codec.sh OUT_DIR            (about 35 minutes on 2 cores)
#   SHIP=1 bash scripts/train_demo_codec.sh OUT_DIR     (then copies the result into uniflow_jax/resources)
#
# OUT_DIR/demo_codec.safetensors are the weights (the original's names), OUT_DIR/demo_codec.json records the
# recipe, the data, the wall time and the round-trip figures. scripts/demo.sh runs this with RETRAIN_CODEC=1.
# CODEC_STEPS and CODEC_CORPUS=TRAIN:VAL (clips per task, default 64:4) shorten it for a smoke run.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?give an output folder}
case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac
PY=${PYTHON:-python}
CODEC_CORPUS=${CODEC_CORPUS:-64:4}
[[ $CODEC_CORPUS =~ ^([0-9]+):([0-9]+)$ ]] || { echo "CODEC_CORPUS=$CODEC_CORPUS: give TRAIN:VAL" >&2; exit 1; }
start=$(date +%s)
stamp() { echo "[codec $(($(date +%s) - start)) s] $*"; }
mkdir -p "$OUT"

stamp "building the codec's corpus (seed 1) in $OUT/codec_data"
"$PY" -m uniflow_jax.demo.corpus --out "$OUT/codec_data" --seed 1 \
  --num_train "${BASH_REMATCH[1]}" --num_val "${BASH_REMATCH[2]}"
stamp "training the codec (configs/demo_codec.py)"
"$PY" -m uniflow_jax.train --config "$REPO/configs/demo_codec.py:$OUT/codec_data" --workdir "$OUT/train" \
  ${CODEC_STEPS:+--config.train.num_steps=$CODEC_STEPS}
"$PY" -m uniflow_jax.export --workdir "$OUT/train" --out "$OUT/demo_codec.safetensors"
trained=$(($(date +%s) - start))
stamp "its round trip of held-out clips"
"$PY" -m uniflow_jax.demo.codec --config "$REPO/configs/demo.py:$OUT/codec_data" \
  --vae "$OUT/demo_codec.safetensors" --per_task "${BASH_REMATCH[2]}" --json "$OUT/round_trip.json"
"$PY" - "$OUT" "$trained" "$CODEC_CORPUS" <<'PY'
import json, pathlib, platform, sys

out, seconds, corpus = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = json.loads((out / "train" / "config.json").read_text())
record = {
    "recipe": "configs/demo_codec.py (scripts/train_demo_codec.sh)",
    "corpus": {"seed": 1, "clips_per_task": corpus, **json.loads((out / "codec_data" / "corpus.json").read_text())},
    "vae": config["model"]["vae"],
    "steps": config["train"]["num_steps"],
    "wall_seconds_to_export": seconds,
    "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    "round_trip": {task: entry["mean"] for task, entry in json.loads((out / "round_trip.json").read_text()).items()},
}
(out / "demo_codec.json").write_text(json.dumps(record, indent=2) + "\n")
PY
if [ "${SHIP:-0}" = 1 ]; then
  cp "$OUT/demo_codec.safetensors" "$OUT/demo_codec.json" "$REPO/uniflow_jax/resources/"
  stamp "shipped: uniflow_jax/resources/demo_codec.{safetensors,json}"
fi
stamp "done: $OUT/demo_codec.safetensors, $OUT/demo_codec.json"
