"""Text normalisation, WER and the recognisers: PocketSphinx offline from its wheel, and a plugin."""

import shutil
import subprocess

import numpy as np
import pytest

from uniflow_jax.frontends.audio import load_audio
from uniflow_jax.metrics import asr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("I don't know -- maybe.", "i dont know maybe"),
        ("It costs 1,000 dollars", "it costs one thousand dollars"),
        ("Room 21, 3.5 m", "room twenty one three point five m"),
        ("  spaced\tout\n", "spaced out"),
        ("“Quoted” text…", "quoted text"),
    ],
)
def test_normalise(text, expected):
    assert asr.normalise(text) == expected


def test_word_error_rates():
    per_item, corpus = asr.word_error_rates(["The cat sat.", "One two three four"], ["the cat", "1 2 3 4 five"])
    assert per_item == [pytest.approx(1 / 3), pytest.approx(1 / 4)]  # a deletion; an insertion
    assert corpus == pytest.approx(2 / 7)  # errors over all reference words, not the mean of the items
    assert asr.word_error_rates(["a b"], [""])[0] == [1.0]
    with pytest.raises(ValueError, match="no words"):
        asr.word_error_rates(["?!"], ["x"])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (the speech source) is not installed")
def test_pocketsphinx_recognises_speech_offline(tmp_path):
    # digits, clearly spoken: the wheel's en-us model gets them all; the same model given as explicit
    # files (the route for a user-supplied model) decodes the same
    wav = tmp_path / "digits.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-s", "130", "-w", str(wav), "one two three four five"], check=True)
    audio = load_audio(wav, asr.PocketSphinx.sample_rate)
    heard = asr.PocketSphinx()(audio)
    assert asr.word_error_rates(["1 2 3 4 5"], [heard])[1] == 0.0
    import pocketsphinx

    model = pocketsphinx.get_model_path("en-us")
    explicit = asr.PocketSphinx(
        hmm=f"{model}/en-us", lm=f"{model}/en-us.lm.bin", dictionary=f"{model}/cmudict-en-us.dict"
    )
    assert explicit(audio) == heard


def test_plugin_recogniser(tmp_path, monkeypatch):
    (tmp_path / "my_asr.py").write_text(
        "class Fixed:\n    sample_rate = 8000\n    def __call__(self, audio):\n        return f'{len(audio)} samples'\n"
        "def make():\n    return Fixed()\n"
        "def broken():\n    return 'not a recogniser'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recogniser = asr.load_plugin("my_asr:make")
    assert recogniser.sample_rate == 8000 and recogniser(np.zeros(3)) == "3 samples"
    with pytest.raises(TypeError, match="sample_rate"):
        asr.load_plugin("my_asr:broken")
    with pytest.raises(ValueError, match="expected 'package"):
        asr.load_plugin("my_asr")
