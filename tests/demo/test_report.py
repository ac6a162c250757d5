"""The demo evaluation: requests for every task from a tiny demo corpus, and a report that favours a
"model" which returns the references (and copes with missing, unreadable and wrong-rate files)."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

from uniflow_jax import tasks
from uniflow_jax.demo import bars
from uniflow_jax.demo import corpus as demo_corpus
from uniflow_jax.demo import report as demo_report
from uniflow_jax.frontends.symbols import note_to_midi, svs_phone_ids, tts_phone_ids

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_VAL = 2
FIELDS = {
    "t2a": {"caption", "duration"},
    "t2m": {"caption", "duration"},
    "tts": {"phonemes", "speaker_embedding"},
    "svs": {"score_phonemes", "score_notes", "score_durations", "score_slurs", "singer"},
    "se": {"noisy_speech"},
    "sr": {"low_sr_audio"},
    "v2a": {"video"},
}


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "uniflow_jax.demo.report", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("demo")
    demo_corpus.build(root, num_train=1, num_val=NUM_VAL, speech_engine="numpy")
    return root


@pytest.fixture(scope="module")
def requests(corpus, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("requests")
    result = run("requests", "--corpus", str(corpus), "--out", str(out), "--per-task", str(NUM_VAL))
    assert "wrote 14 requests" in result.stdout
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def copied(corpus, requests, tmp_path_factory) -> pathlib.Path:
    """A "model" that returns the clean reference of every request."""
    generated = tmp_path_factory.mktemp("generated")
    for row in requests:
        (generated / row["task"]).mkdir(exist_ok=True)
        shutil.copy(corpus / "val" / row["task"] / "wavs" / f"{row['id']}.wav", generated / row["task"])
    return generated


def test_requests_have_every_field(corpus, requests):
    by_task = {}
    for row in requests:
        by_task.setdefault(row["task"], []).append(row)
        assert set(row) == {"id", "task"} | FIELDS[row["task"]], row
        for key in ("speaker_embedding", "noisy_speech", "low_sr_audio", "video"):
            if key in row:
                assert pathlib.Path(row[key]).is_absolute() and pathlib.Path(row[key]).is_file(), row
    assert {task: [r["id"] for r in rows] for task, rows in by_task.items()} == {
        task: [f"{task}_val_{i:04d}" for i in range(NUM_VAL)] for task in tasks.REPORT_ORDER
    }
    for row in by_task["t2a"] + by_task["t2m"]:
        frames = sf.info(str(corpus / "val" / row["task"] / "wavs" / f"{row['id']}.wav")).frames
        assert row["duration"] == pytest.approx(frames / 24000) and row["caption"]


def test_tts_requests_round_trip(corpus, requests):
    with h5py.File(corpus / "val" / "tts" / "phonemes.h5", "r") as f:
        for row in (r for r in requests if r["task"] == "tts"):
            np.testing.assert_array_equal(tts_phone_ids(row["phonemes"]), f[f"phoneme/{row['id']}"][()])
            np.testing.assert_array_equal(np.load(row["speaker_embedding"]), f[f"xvector/{row['id']}"][()])


def test_svs_requests_round_trip(corpus, requests):
    scores = json.loads((corpus / "val" / "svs" / "score.json").read_text())
    for row in (r for r in requests if r["task"] == "svs"):
        score = scores[row["id"]]
        phones = row["score_phonemes"].split()
        svs_phone_ids(phones)
        assert phones == score["phoneme"].split()
        assert [note_to_midi(n) for n in row["score_notes"].split()] == score["midi"]
        assert [float(d) for d in row["score_durations"].split()] == pytest.approx(score["midi_duration"], abs=1e-6)
        assert [int(s) for s in row["score_slurs"].split()] == score["is_slur"]
        assert row["singer"] == score["spk"]


def test_midi_to_note_inverts_note_to_midi():
    assert [demo_report.midi_to_note(m) for m in (0, 60, 56, 46)] == ["rest", "C4", "G#3", "A#2"]
    assert all(note_to_midi(demo_report.midi_to_note(m)) == m for m in range(12, 128))


def test_report_favours_the_references(corpus, copied, tmp_path):
    out = tmp_path / "report.json"
    result = run("report", "--corpus", str(corpus), "--generated", str(copied), "--out", str(out), "--per_task", "2")
    assert "own better" in result.stdout and "NOT own" not in result.stdout and "NOT MET" not in result.stdout
    assert "7 of 7 tasks meet their bars" in result.stdout
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert report["summary"]["tasks_meeting_bars"] == list(tasks.REPORT_ORDER)
    for task, section in report["tasks"].items():  # the references meet every bar that applies, strictly
        assert section["meets_bars"] and section["bars"], task
        for name, bar in section["bars"].items():
            assert bar["verdict"] in ("met", "not applicable"), (task, name, bar)
    assert report["summary"]["missing"] == 0 and report["summary"]["comparisons"] > 0
    assert report["summary"]["favourable"] == report["summary"]["comparisons"]
    for task, section in report["tasks"].items():
        assert section["generated"] == NUM_VAL, task
        compared = [f for f in section["figures"].values() if f["kind"] in ("own_vs_mismatched", "output_vs_input")]
        assert compared, task
        for name, fig in section["figures"].items():
            if fig["kind"] == "own_vs_mismatched" and fig["own"] != fig["mismatched"]:  # not a tie (event counts)
                assert fig["learned"] is True and fig["own_better_items"] == NUM_VAL, (task, name, fig)
        assert section["figures"]["duration_ratio"]["mean"] == pytest.approx(1.0)
    se, sr = report["tasks"]["se"]["figures"], report["tasks"]["sr"]["figures"]
    assert se["si_sdr_db"]["output"] > 100 > se["si_sdr_db"]["input"]
    assert sr["lsd"]["output"] == 0.0 < sr["lsd"]["input"] and sr["lsd_high"]["output"] < sr["lsd_high"]["input"]
    svs = report["tasks"]["svs"]["figures"]
    assert svs["score_semitone_accuracy"]["own"] > 0.8
    assert report["tasks"]["v2a"]["figures"]["onset_f1_vs_flashes"]["own"] > 0.8
    # The page: every task's items with the condition, players whose files exist, spectrograms; and the sheet.
    page = (tmp_path / "report.html").read_text()
    for task in tasks.REPORT_ORDER:
        assert f'<section id="{task}">' in page, task
    assert page.count('<div class="item"') == 2 * len(tasks.TASKS)
    sources = re.findall(r'<(?:audio|img)[^>]* src="([^"]+)"', page)
    assert sources and all((tmp_path / src).exists() for src in sources), sources
    assert page.count("<audio") == 2 * (2 * len(tasks.TASKS) + 2)  # reference + generated; SE/SR inputs too
    assert page.count('class="frames"') == 2  # V2A frame strips
    from PIL import Image

    assert Image.open(tmp_path / "report.png").size[1] >= len(tasks.TASKS) * 80


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report page test (.ci/run installs Debian's chromium)")
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    return found


def test_report_page_in_a_headless_browser(corpus, copied, tmp_path):
    """report.html opened by a real browser from the file system: it loads without script errors, every image
    loads, every task and item is in the rendered page, and the screenshot shows spectrograms (structure, not
    pixels: the share of coloured pixels and their rows)."""
    browser = _chromium()
    out = tmp_path / "report.json"
    run("report", "--corpus", str(corpus), "--generated", str(copied), "--out", str(out), "--per_task", "2")
    url = (tmp_path / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:2000]
    images = re.search(r'data-images="(\d+)/(\d+)"', body[1])
    assert images and images[1] == images[2] and int(images[2]) > 2 * len(tasks.TASKS), body[1]
    assert "data-errors" not in body[1], body[1]
    for task in tasks.REPORT_ORDER:
        assert f'<section id="{task}">' in dom and dom.count(f'<div class="item" id="{task}_val_') == 2, task
    assert dom.count('<tr class="bar">') == sum(len(b) for b in bars.BARS.values())
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1400,2400", url], capture_output=True, timeout=120
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), np.int16)
    assert pixels.shape[:2] == (2400, 1400)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60  # viridis spectrograms; text and tables are grey
    assert coloured.mean() > 0.05, coloured.mean()
    rows = np.flatnonzero(coloured.mean(axis=1) > 0.05)  # bands of spectrogram rows, one per item shown
    bands = 1 + np.count_nonzero(np.diff(rows) > 20)
    assert bands >= 4, bands


def test_bars_refuse_a_model_that_ignores_its_condition(corpus, copied, tmp_path):
    """Every item answered with the other item's reference: a plausible sound, the wrong condition. The bars
    that depend on the condition must not be met, and no bar may count a tie as met."""
    features = demo_report._Features()
    for task in ("t2a", "t2m", "tts", "svs", "v2a"):  # SE and SR are judged against their input, not other items
        items = demo_report.load_items(corpus, task, per_task=2)
        swapped = {items[0].id: items[1].target, items[1].id: items[0].target}
        judged = bars.judge_task(items, swapped, None, features)
        for name, entry in judged["bars"].items():
            if entry["verdict"] == "met":
                # only bars that do not depend on the condition, or where both items' conditions agree
                assert entry["baseline_kind"] is None or entry["model"]["figure"] != entry["baseline"]["figure"], (
                    task,
                    name,
                    entry,
                )
        conditional = [e for e in judged["bars"].values() if e["baseline_kind"] is not None]
        if task not in ("t2a", "v2a", "t2m"):  # two items may share an event count, a flash pattern or a tempo
            assert not all(e["verdict"] == "met" for e in conditional), (task, judged)


def test_missing_unreadable_and_wrong_rate_files(corpus, copied, tmp_path):
    items = demo_report.load_items(corpus, "t2a", per_task=2)
    generated = tmp_path / "generated"
    (generated / "t2a").mkdir(parents=True)
    shutil.copy(copied / "t2a" / f"{items[0].id}.wav", generated / "t2a")
    section = demo_report.evaluate_task(items, generated)
    assert (section["generated"], section["missing"], section["missing_ids"]) == (1, 1, [items[1].id])
    assert section["figures"]["onset_f1"]["items"] == 1 and section["figures"]["onset_f1"]["learned"]

    (generated / "t2a" / f"{items[1].id}.wav").write_bytes(b"RIFF not audio")
    section = demo_report.evaluate_task(items, generated)
    assert section["missing"] == 0 and list(section["unreadable"]) == [items[1].id]

    wrong = generated / "t2a" / f"{items[0].id}.wav"
    sf.write(wrong, np.zeros(16000, np.float32), 16000)
    with pytest.raises(ValueError, match=f"{wrong}.*16000 Hz"):
        demo_report.evaluate_task(items, generated)


def test_report_without_generated_audio(corpus, tmp_path):
    report = demo_report.evaluate(corpus, tmp_path / "nothing", per_task=2)
    assert report["summary"]["missing"] == 2 * len(tasks.REPORT_ORDER)
    assert report["summary"]["comparisons"] == 0
    assert "0/2 generated, 2 missing" in demo_report.format_table(report)
    demo_report.write_report(report, tmp_path / "report.json")
    json.loads((tmp_path / "report.json").read_text())


def test_se_speech_quality_figures(corpus, copied):
    """The references as the 'generated' audio: perfect PESQ/STOI/LSD, above the noisy inputs'."""
    figures = demo_report.evaluate_task(demo_report.load_items(corpus, "se", per_task=2), copied)["figures"]
    assert figures["pesq_wb"]["output"] > 4.5 > figures["pesq_wb"]["input"] and figures["pesq_wb"]["learned"]
    assert figures["stoi"]["output"] > 0.99 > figures["stoi"]["input"] and figures["stoi"]["learned"]
    assert figures["lsd"]["output"] == 0.0 < figures["lsd"]["input"]


def test_reference_manifests_for_the_evaluate_command(corpus, tmp_path):
    paths = demo_report.write_references(corpus, tmp_path, per_task=2)
    assert [p.stem for p in paths] == list(tasks.REPORT_ORDER)
    rows = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in paths}
    assert all(len(r) == 2 and all(pathlib.Path(row["audio"]).exists() for row in r) for r in rows.values())
    assert all(row["text"] for task in ("tts", "t2a", "t2m") for row in rows[task])
    assert all("text" not in row for row in rows["se"])


def test_codec_round_trip_command(corpus, tmp_path):
    """``python -m uniflow_jax.demo.codec`` (scripts/demo.sh): every task's held-out clips through a VAE file
    (here the demo config's VAE with random weights), figures per clip and per task, speech with PESQ-WB."""
    import jax
    from flax import nnx
    from safetensors.numpy import save_file

    from uniflow_jax import config_lib
    from uniflow_jax.models import vae
    from uniflow_jax.weights import names, torch_import

    checkout = REPO.parent
    config = config_lib.load_config_file(str(checkout / "configs/demo.py"), str(corpus))
    model = vae.VAE(config_lib.vae_config(config), rngs=nnx.Rngs(0))
    tensors = torch_import.export_state(jax.tree.map(np.asarray, nnx.state(model)), names.VAE)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp_path / "vae.safetensors"))
    command = ["-m", "uniflow_jax.demo.codec", "--config", f"configs/demo.py:{corpus}", "--vae",
               str(tmp_path / "vae.safetensors"), "--per_task", "1", "--json", str(tmp_path / "codec.json"),
               "--out_dir", str(tmp_path / "round_trips")]  # fmt: skip
    result = subprocess.run([sys.executable, *command], cwd=checkout, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "codec.json").read_text())
    assert set(figures) == {"tts", "svs", "se", "sr", "v2a", "t2a", "t2m"}
    for task, entry in figures.items():
        assert len(entry["clips"]) == 1
        assert (tmp_path / "round_trips" / task / f"{entry['clips'][0]['id']}.wav").exists()
        assert np.isfinite(entry["mean"]["log_mel_distance"]) and entry["mean"]["log_mel_distance"] > 0.5  # random
        assert ("pesq_wb" in entry["mean"]) == (task in ("tts", "se"))


def test_train_demo_codec_script(tmp_path):
    """scripts/train_demo_codec.sh (RETRAIN_CODEC=1 of the demo), shortened: a corpus of its own, a few steps,
    weights the codec command loads, and a record of recipe, data, wall time and round trip."""
    env = {**os.environ, "PYTHON": sys.executable, "CODEC_STEPS": "2", "CODEC_CORPUS": "2:1"}
    result = subprocess.run(
        ["bash", str(REPO.parent / "scripts/train_demo_codec.sh"), str(tmp_path / "codec")],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "codec" / "demo_codec.json").read_text())
    assert record["steps"] == 2 and record["corpus"]["seed"] == 1 and record["wall_seconds_to_export"] > 0
    assert set(record["round_trip"]) == set(tasks.REPORT_ORDER)
    assert all(np.isfinite(v["log_mel_distance"]) for v in record["round_trip"].values())
    from uniflow_jax import config_lib
    from uniflow_jax.demo import codec

    config = config_lib.load_config_file(str(REPO.parent / "configs/demo.py"), str(tmp_path / "codec/codec_data"))
    trained = codec.load_vae(config, str(tmp_path / "codec" / "demo_codec.safetensors"))
    assert np.isfinite(trained.round_trip(np.zeros(4800, np.float32))).all()
