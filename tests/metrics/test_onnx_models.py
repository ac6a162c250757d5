"""The ONNX model wrappers, and the metrics that run them (speaker similarity, FD/KL/IS, CLAP score) end to
end through ``evaluate``, on tiny models built here whose outputs numpy can reproduce."""

import json
import pathlib

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from uniflow_jax import evaluate
from uniflow_jax.metrics import distribution
from uniflow_jax.metrics.onnx_models import OnnxAudioModel, OnnxTextModel

RATE = 16000
LOGIT_WEIGHTS = np.array([[3.0, -1.0, 0.0], [0.0, 40.0, -20.0]], np.float32)
VOCAB = {"[UNK]": 0, "a": 1, "dog": 2, "barks": 3, "loud": 4, "music": 5}
WORD_VECTORS = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, -1], [-1, 2]], np.float32)


def features(audio: np.ndarray) -> np.ndarray:
    """What the tiny audio model computes: [mean(x), mean(x²)]."""
    return np.array([np.mean(audio), np.mean(audio**2)])


def save(graph: onnx.GraphProto, path: pathlib.Path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def audio_model(path: pathlib.Path, samples: int | str = "samples") -> str:
    """(1, samples) float → embedding (1, 2) = [mean(x), mean(x²)] and logits (1, 3) = embedding @ W."""
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["audio", "audio"], ["square"]),
        helper.make_node("ReduceMean", ["square"], ["power"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["mean", "power"], ["embedding"], axis=1),
        helper.make_node("MatMul", ["embedding", "weights"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_audio",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, samples])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]),
        ],
        [numpy_helper.from_array(LOGIT_WEIGHTS, "weights")],
    )
    return save(graph, path)


def text_model(path: pathlib.Path, input_name: str = "input_ids") -> str:
    """input_ids (1, tokens) → the mean of fixed word vectors (1, 2)."""
    nodes = [
        helper.make_node("Gather", ["table", input_name], ["vectors"]),
        helper.make_node("ReduceMean", ["vectors"], ["text_embedding"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [helper.make_tensor_value_info(input_name, TensorProto.INT64, [1, "tokens"])],
        [helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(WORD_VECTORS, "table")],
    )
    return save(graph, path)


def fbank_model(path: pathlib.Path) -> str:
    """A WeSpeaker-style speaker model: feats (1, frames, 80) → their mean over frames (1, 80)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["feats"], ["embs"], axes=[1], keepdims=0)],
        "tiny_fbank",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, "frames", 80])],
        [helper.make_tensor_value_info("embs", TensorProto.FLOAT, [1, 80])],
    )
    return save(graph, path)


def tokenizer(path: pathlib.Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return str(path)


def clips(count: int, seconds: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.05 + 0.1 * i) * rng.standard_normal(int(seconds * RATE)) + 0.02 * i for i in range(count)]


def test_audio_model_outputs_and_checks(tmp_path):
    model = OnnxAudioModel(audio_model(tmp_path / "a.onnx"), RATE)
    x = clips(1)[0]
    out = model(x)
    assert set(out) == {"embedding", "logits"} and out["embedding"].shape == (1, 2)
    np.testing.assert_allclose(out["embedding"][0], features(x), rtol=1e-5)
    np.testing.assert_allclose(out["logits"][0], features(x) @ LOGIT_WEIGHTS, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.embedding(x), features(x), rtol=1e-5)
    with pytest.raises(ValueError, match=r"no output named feats; its outputs are \['embedding', 'logits'\]"):
        model.check_outputs(["embedding", "feats"], "--flag")
    fixed = OnnxAudioModel(audio_model(tmp_path / "fixed.onnx", samples=8000), RATE)
    assert fixed(x[:8000])["embedding"].shape == (1, 2)
    with pytest.raises(ValueError, match="exactly 8000 samples"):
        fixed(x)
    with pytest.raises(ValueError, match=r"one float input shaped \(batch, samples\)"):
        OnnxAudioModel(text_model(tmp_path / "t.onnx"), RATE)
    with pytest.raises(FileNotFoundError, match="no such ONNX model"):
        OnnxAudioModel(tmp_path / "missing.onnx", RATE)


def test_text_model(tmp_path):
    model = OnnxTextModel(text_model(tmp_path / "t.onnx"), tokenizer(tmp_path / "tokenizer.json"))
    np.testing.assert_allclose(model("a dog barks"), WORD_VECTORS[[1, 2, 3]].mean(axis=0))
    np.testing.assert_allclose(model("a cat"), WORD_VECTORS[[1, 0]].mean(axis=0))  # cat: [UNK]
    with pytest.raises(ValueError, match="expected inputs among"):
        OnnxTextModel(text_model(tmp_path / "p.onnx", "pixel_values"), tmp_path / "tokenizer.json")


@pytest.fixture
def t2a_items(tmp_path) -> list[evaluate.Item]:
    """Four generated clips (noise at four levels) and, as references, the same clips in another order."""
    items, audio = [], clips(4)
    for i, clip in enumerate(audio):
        sf.write(tmp_path / f"g{i}.wav", clip, RATE)
        sf.write(tmp_path / f"r{i}.wav", audio[(i + 1) % 4], RATE)
        items.append(
            evaluate.Item(f"c{i}", tmp_path / f"g{i}.wav", tmp_path / f"r{i}.wav", ["a dog barks", "music"][i % 2])
        )
    return items


def test_fd_kl_is_and_clap_through_evaluate(tmp_path, t2a_items):
    options = evaluate.Options(
        audio_model=audio_model(tmp_path / "a.onnx"),
        is_splits=1,
        clap_audio_model=audio_model(tmp_path / "clap_audio.onnx"),
        clap_text_model=text_model(tmp_path / "clap_text.onnx"),
        clap_tokenizer=tokenizer(tmp_path / "tokenizer.json"),
        clap_rate=RATE,
    )
    report = evaluate.evaluate("t2a", t2a_items, options)
    gen = np.stack([features(sf.read(item.generated)[0]) for item in t2a_items])
    ref = np.stack([features(sf.read(item.reference)[0]) for item in t2a_items])
    # the references are the generated clips in another order: the same distribution, FD 0
    assert report["corpus"]["fd"] == pytest.approx(0.0, abs=1e-6)
    p_gen, p_ref = distribution.softmax(gen @ LOGIT_WEIGHTS), distribution.softmax(ref @ LOGIT_WEIGHTS)
    kl = distribution.kl_divergence(p_ref, p_gen)
    assert report["metrics"]["kl"]["mean"] == pytest.approx(kl.mean(), rel=1e-4)
    assert report["per_item"]["c0"]["kl"] == pytest.approx(kl[0], rel=1e-4)
    assert report["corpus"]["is"] == {
        "mean": pytest.approx(distribution.inception_score(p_gen)[0], rel=1e-4),
        "std": 0.0,
        "splits": 1,
    }
    text = {"a dog barks": WORD_VECTORS[[1, 2, 3]].mean(axis=0), "music": WORD_VECTORS[5]}
    for item, row in zip(t2a_items, gen, strict=True):
        cosine = text[item.text] @ row / np.linalg.norm(text[item.text]) / np.linalg.norm(row)
        assert report["per_item"][item.id]["clap"] == pytest.approx(cosine, rel=1e-4)
    assert set(report["settings"]) == {"fd", "kl", "is", "clap"}
    json.dumps(report)


def test_fd_alone_needs_no_logits_and_output_names_are_checked(tmp_path, t2a_items):
    model = audio_model(tmp_path / "a.onnx")
    report = evaluate.evaluate("t2m", t2a_items, evaluate.Options(metrics=("fd",), audio_model=model))
    assert set(report["corpus"]) == {"fd"} and report["metrics"] == {}
    report = evaluate.evaluate("t2m", t2a_items, evaluate.Options(metrics=("is",), audio_model=model))
    assert report["corpus"]["is"]["splits"] == 4 and report["notes"] == ["is: 4 items, so 4 splits instead of 10"]
    with pytest.raises(ValueError, match="choose with --audio_model_embedding"):
        evaluate.evaluate("v2a", t2a_items, evaluate.Options(audio_model=model, audio_model_logits="clipwise"))


@pytest.mark.parametrize("kind", ["waveform", "fbank"])
def test_speaker_similarity_through_evaluate(tmp_path, kind):
    rng = np.random.default_rng(0)
    items = []
    for name, seconds in (("same", 1.0), ("other", 1.0), ("short", 0.3)):
        clip = 0.1 * rng.standard_normal(int(seconds * 24000))
        sf.write(tmp_path / f"{name}_gen.wav", clip, 24000)
        sf.write(tmp_path / f"{name}_ref.wav", clip if name != "other" else np.abs(clip) + 0.1, 24000)
        items.append(evaluate.Item(name, tmp_path / f"{name}_gen.wav", tmp_path / f"{name}_ref.wav"))
    model = (audio_model if kind == "waveform" else fbank_model)(tmp_path / "spk.onnx")
    options = evaluate.Options(metrics=("sim",), speaker_model=model)
    report = evaluate.evaluate("tts", items, options)
    assert report["per_item"]["same"]["sim"] == pytest.approx(1.0, abs=1e-6)
    assert report["per_item"]["other"]["sim"] < 0.9
    assert report["failures"] == {"sim": {"short": "shorter than 0.5 s"}}
    assert report["metrics"]["sim"]["count"] == 2
    assert "generated: resampled 24000 Hz -> 16000 Hz (3 files)" in report["notes"]
