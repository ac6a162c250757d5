"""The validation command: a summary of usable rows and skips; exit status 1 on a malformed manifest."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def write_config(path: pathlib.Path, train: list[dict], tokenizer: str) -> str:
    path.write_text(
        "from uniflow_jax import config_lib\n\n\n"
        "def get_config():\n"
        f"    config = config_lib.load_config_file({str(REPO / 'configs' / 'tiny.py')!r})\n"
        f"    config.data.train = {json.dumps(train)}\n"
        f"    config.data.tokenizer = {tokenizer!r}\n"
        "    config.data.task_weights = 'uniform'\n"
        "    return config\n"
    )
    return str(path)


def run(config: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "uniflow_jax.data.validate", f"--config={config}", "--splits=train", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_reports_usable_rows_and_skips(tmp_path, corpus, bad_corpus):
    train = [corpus["tts"]["entry"], corpus["v2a"]["entry"], bad_corpus["t2a"]]
    result = run(write_config(tmp_path / "cfg.py", train, corpus["tokenizer"]))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("tts:", "v2a:", "bad"))}
    assert lines["tts:tts"].split()[2:4] == ["12", "12"]
    bad = lines["bad_t2a"]
    assert bad.split()[2:4] == ["7", "1"]
    for reason in ("missing 1", "unreadable 1", "empty 1", "silent 1", "nonfinite 1", "too_short 1"):
        assert reason in bad


def test_malformed_manifest_exits_with_status_1(tmp_path, corpus):
    content = tmp_path / "content.jsonl"
    content.write_text('{"audio_id": "t2a_000", "caption": "ok"}\n{"audio_id": "t2a_001", "caption": }\n')
    entry = {**corpus["t2a"]["entry"], "content": str(content)}
    result = run(write_config(tmp_path / "cfg.py", [entry], corpus["tokenizer"]), "--noaudio")
    assert result.returncode == 1
    assert f"{content}:2: not valid JSON" in result.stdout
    assert "validation FAILED" in result.stderr
