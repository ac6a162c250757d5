"""Reference speech → x-vector: WeSpeaker's Kaldi fbank in numpy and a user-supplied ONNX speaker model."""

import numpy as np
import pytest
import soundfile as sf

from uniflow_jax.frontends import audio, speaker
from uniflow_jax.inference import requests as requests_lib


def _speaker_onnx(path, feat_dim=80, out_dim=256):
    """A stand-in speaker model in WeSpeaker's export format: feats (B, T, feat_dim) → max over time → MatMul →
    embs (B, out_dim). Returns its matrix."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((feat_dim, out_dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["feats"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weight"], ["embs"]),
        ],
        "speaker",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["B", "T", feat_dim])],
        [helper.make_tensor_value_info("embs", TensorProto.FLOAT, ["B", out_dim])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime of the extra's range
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weight


def test_fbank_matches_kaldi():
    t = np.arange(1600) / 16000
    k = np.arange(1, 80)[:, None]
    wave = 0.01 * np.sin(2 * np.pi * 100 * k * t + k**2).sum(0) * (1 + (t > 0.05))  # louder after 50 ms
    features = speaker.fbank(wave)
    assert features.shape == (8, 80) and features.dtype == np.float32  # 1 + (1600 - 400) // 160 frames
    # kaldi-native-fbank 1.23 (Kaldi's defaults, dither 0, 80 bins) on the same samples at 16-bit scale, minus the
    # mean over time: computed once, outside the test suite.
    expected = [[-0.7427, -0.617, -0.6888, -0.6817, -0.6747], [0.6436, 0.7693, 0.6975, 0.7046, 0.7116]]
    np.testing.assert_allclose(features[[0, 7]][:, [0, 13, 40, 62, 79]], expected, atol=1e-4)
    with pytest.raises(ValueError, match="at least 25 ms"):
        speaker.fbank(np.zeros(399))


def test_onnx_speaker_model_embeds_reference_speech_at_any_rate(tmp_path):
    weight = _speaker_onnx(tmp_path / "speaker.onnx")
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "ref.wav", rng.uniform(-0.3, 0.3, (22050, 2)).astype(np.float32), 22050)  # 1 s stereo
    embedding = speaker.embed(tmp_path / "ref.wav", tmp_path / "speaker.onnx")
    expected = speaker.fbank(audio.load_audio(tmp_path / "ref.wav", 16000)).max(axis=0) @ weight
    assert embedding.shape == (256,) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-4)
    # The sampler's TTS speaker: the same embedding; a model of another width is refused.
    fields = {"ref_speaker_speech": str(tmp_path / "ref.wav"), "speaker_model": str(tmp_path / "speaker.onnx")}
    np.testing.assert_array_equal(requests_lib._xvector(fields, 256), embedding)
    with pytest.raises(ValueError, match="256 values, the model's x-vectors have 192"):
        requests_lib._xvector(fields, 192)


def test_a_model_without_fbank_input_is_refused(tmp_path):
    _speaker_onnx(tmp_path / "mfcc40.onnx", feat_dim=40)
    with pytest.raises(ValueError, match=r"expected one input of shape \(B, T, 80\)"):
        speaker.SpeakerModel(tmp_path / "mfcc40.onnx")
    with pytest.raises(FileNotFoundError, match="no ONNX speaker model"):
        speaker.SpeakerModel(tmp_path / "missing.onnx")
