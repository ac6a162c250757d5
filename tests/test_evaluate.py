"""``python -m uniflow_jax.evaluate``: inputs (folders, manifests, mismatches), metric selection, the SE and
SR commands end to end, and SVS and TTS (WER) on signals with known answers."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from uniflow_jax import evaluate
from uniflow_jax.demo import speech as demo_speech

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "uniflow_jax.evaluate", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result


def write_manifest(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def sine(freq: float, seconds: float = 1.0, rate: int = 24000) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def test_se_command(tmp_path):
    import librosa

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    speech = demo_speech.NumpySpeech()
    for i, key in enumerate(("same", "noisy")):
        audio = speech.say(["the", "big", "red", "one", "my"], i, np.random.default_rng(i)).audio.astype(np.float64)
        clean = librosa.resample(audio, orig_sr=24000, target_sr=16000)
        sf.write(ref / f"{key}.wav", clean, 16000)
        if key == "same":
            sf.write(gen / "same.wav", clean, 16000)
        else:  # 24 kHz, noisy, 0.1 s too long
            noisy = audio + 0.05 * np.random.default_rng(0).standard_normal(len(audio))
            sf.write(gen / "noisy.wav", np.concatenate([noisy, np.zeros(2400)]), 24000)
    result = run("--task", "se", "--generated", str(gen), "--reference", str(ref))
    report = json.loads((gen / "metrics.json").read_text())
    same, noisy = report["per_item"]["same"], report["per_item"]["noisy"]
    assert same["pesq_wb"] == pytest.approx(4.644, abs=1e-3) and same["stoi"] == pytest.approx(1.0)
    # segSNR: 35 dB (the cap) in every frame but those of digital silence, which Loizou's snr.m puts at -10 dB
    assert 20.0 < same["segsnr"] < 35.0 and same["llr"] == pytest.approx(0.0, abs=1e-6)
    assert (same["csig"], same["cbak"], same["covl"]) == (5.0, 5.0, 5.0)
    assert noisy["pesq_wb"] < 3.0 and noisy["stoi"] < same["stoi"] and noisy["segsnr"] < 20.0
    assert 1.0 <= noisy["dnsmos_ovrl"] <= 5.0
    assert report["metrics"]["pesq_wb"]["count"] == 2
    assert report["metrics"]["stoi"]["mean"] == pytest.approx((same["stoi"] + noisy["stoi"]) / 2)
    assert report["notes"] == [
        "generated: resampled 24000 Hz -> 16000 Hz (1 files)",
        "1 items cut to the shorter of generated and reference: noisy",
    ]
    assert set(report["settings"]) == {"pesq", "stoi", "segsnr", "composite", "dnsmos"}
    assert "pesq_wb" in result.stdout and "mean" in result.stdout and f"wrote {gen / 'metrics.json'}" in result.stdout


def test_sr_command_with_a_manifest(tmp_path):
    (tmp_path / "gen").mkdir(), (tmp_path / "refs").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for key in ("a", "b"):
        audio = 0.1 * rng.standard_normal(24000)
        sf.write(tmp_path / "gen" / f"{key}.wav", audio if key == "a" else 2 * audio, 24000, subtype="FLOAT")
        sf.write(tmp_path / "refs" / f"{key}.wav", audio, 24000, subtype="FLOAT")
        rows.append({"audio_id": key, "audio": f"refs/{key}.wav"})
    manifest = write_manifest(tmp_path / "test.jsonl", rows)
    out = tmp_path / "out" / "sr.json"
    result = run("--task", "sr", "--generated", str(tmp_path / "gen"), "--reference", str(manifest), "--json", str(out))
    report = json.loads(out.read_text())
    assert report["per_item"] == {"a": {"lsd": 0.0}, "b": {"lsd": pytest.approx(math.log10(4), abs=1e-6)}}
    assert report["metrics"]["lsd"]["count"] == 2 and report["notes"] == []
    assert "n_fft 2048, hop 512" in report["settings"]["lsd"] and "lsd" in result.stdout

    sf.write(tmp_path / "gen" / "b.wav", 0.1 * rng.standard_normal(20000), 24000)
    args = ("--task", "sr", "--generated", str(tmp_path / "gen"), "--reference", str(manifest), "--json", str(out))
    failed = run(*args, "--length_mismatch", "error", ok=False)
    assert "item b: 20000 generated vs 24000 reference samples" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_ids_must_match(tmp_path):
    (tmp_path / "gen").mkdir(), (tmp_path / "ref").mkdir()
    for key in ("a", "b", "c"):
        sf.write(tmp_path / "gen" / f"{key}.wav", np.zeros(10), 16000)
    for key in ("a", "d"):
        sf.write(tmp_path / "ref" / f"{key}.wav", np.zeros(10), 16000)
    with pytest.raises(evaluate.EvaluationError, match=r"only generated \(2\): b, c\n  only reference \(1\): d"):
        evaluate.load_items(tmp_path / "gen", tmp_path / "ref")
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_id": k, "text": k.upper()} for k in ("a", "b", "c")])
    items = evaluate.load_items(tmp_path / "gen", manifest)
    assert [(i.id, i.reference, i.text) for i in items] == [("a", None, "A"), ("b", None, "B"), ("c", None, "C")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(evaluate.EvaluationError, match=r"empty: no \.wav files"):
        evaluate.load_items(tmp_path / "empty", manifest)
    with pytest.raises(evaluate.EvaluationError, match="missing: not a folder"):
        evaluate.load_items(tmp_path / "missing", manifest)


def test_bad_manifest_lines_are_listed(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_id": "a", "audio": "/x/a.wav"}\nnot json\n{"audio": "b.wav"}\n{"audio_id": "a"}\n')
    with pytest.raises(evaluate.EvaluationError) as error:
        evaluate.read_manifest(manifest)
    assert f"{manifest}:2: not valid JSON" in str(error.value)
    assert f"{manifest}:3: expected a JSON object with an 'audio_id'" in str(error.value)
    assert f"{manifest}:4: duplicate audio_id 'a'" in str(error.value)


def test_metric_selection():
    with pytest.raises(evaluate.EvaluationError, match=r"fd, kl, is need --audio_model \(an audio classifier"):
        evaluate.select_metrics("t2a", evaluate.Options())
    with pytest.raises(evaluate.EvaluationError, match=r"clap needs --clap_audio_model .*, --clap_text_model"):
        evaluate.select_metrics("t2m", evaluate.Options(metrics=("clap",), clap_tokenizer="tok.json"))
    with pytest.raises(evaluate.EvaluationError, match="task sr has no metric pesq"):
        evaluate.select_metrics("sr", evaluate.Options(metrics=("pesq",)))
    assert evaluate.select_metrics("tts", evaluate.Options()) == (("wer",), ["sim not computed: pass --speaker_model"])
    chosen, notes = evaluate.select_metrics("v2a", evaluate.Options(audio_model="m.onnx"))
    assert chosen == ("fd", "kl", "is") and "clap not computed" in notes[0]


def test_svs_pitch_and_timbre(tmp_path):
    # a 220 Hz tone against itself and against the tone a semitone up
    sf.write(tmp_path / "ref.wav", sine(220.0), 24000)
    sf.write(tmp_path / "same.wav", sine(220.0), 24000)
    sf.write(tmp_path / "sharp.wav", sine(220.0 * 2 ** (1 / 12)), 24000)
    items = [evaluate.Item(key, tmp_path / f"{key}.wav", tmp_path / "ref.wav") for key in ("same", "sharp")]
    report = evaluate.evaluate("svs", items)
    same, sharp = report["per_item"]["same"], report["per_item"]["sharp"]
    assert same == {"mcd": pytest.approx(0.0, abs=1e-9), "logf0_rmse": 0.0, "semitone_accuracy": 1.0}
    assert sharp["logf0_rmse"] == pytest.approx(math.log(2) / 12, abs=0.003)
    assert sharp["semitone_accuracy"] == 0.0 and sharp["mcd"] > 0.0


def test_tts_wer_with_a_plugin_recogniser(tmp_path, monkeypatch):
    # the plugin "hears" the words of its clip's length in seconds, so the WER is known
    (tmp_path / "length_asr.py").write_text(
        "WORDS = ['one', 'one two', 'one two three']\n"
        "class Heard:\n    sample_rate = 8000\n"
        "    def __call__(self, audio):\n        return WORDS[round(len(audio) / 8000) - 1]\n"
        "def make():\n    return Heard()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "gen").mkdir()
    for key, seconds in (("x", 1), ("y", 3)):
        sf.write(tmp_path / "gen" / f"{key}.wav", np.zeros(16000 * seconds), 16000)
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"audio_id": "x", "transcript": "One!"}, {"audio_id": "y", "transcript": "1 2 3 4"}]
    )
    items = evaluate.load_items(tmp_path / "gen", manifest, text_key="transcript")
    report = evaluate.evaluate("tts", items, evaluate.Options(asr_plugin="length_asr:make"))
    assert report["per_item"] == {
        "x": {"wer": 0.0, "asr_transcript": "one"},
        "y": {"wer": 0.25, "asr_transcript": "one two three"},
    }
    assert report["corpus"]["wer"] == pytest.approx(1 / 5)
    assert "generated: resampled 16000 Hz -> 8000 Hz (2 files)" in report["notes"]
    with pytest.raises(evaluate.EvaluationError, match="2 items have no text"):
        evaluate.evaluate(
            "tts", evaluate.load_items(tmp_path / "gen", manifest), evaluate.Options(asr_plugin="length_asr:make")
        )
