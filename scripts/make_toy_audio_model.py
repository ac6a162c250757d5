"""Write a *toy* ONNX audio model in the convention ``python -m uniflow_jax.evaluate --audio_model`` reads.

    python scripts/make_toy_audio_model.py toy_audio.onnx [--classes 16] [--dims 32]

Waveform (batch, samples) at 16 kHz → STFT (512/256, Hann) → log power → a fixed random projection of the
mean and standard deviation over time → ``embedding`` (batch, dims) and ``logits`` (batch, classes). It is
**not** a trained audio classifier: its FD/KL/IS only compare spectral statistics and exist to exercise the
evaluation end to end where no real model (PANNs CNN14, VGGish, ...) can be downloaded. Real figures need a
real model exported by its owner.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_FFT, HOP = 512, 256


def build(classes: int, dims: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    bins = N_FFT // 2 + 1
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    constants = {
        "window": window,
        "frame_step": np.array(HOP, np.int64),
        "frame_length": np.array(N_FFT, np.int64),
        "eps": np.array(1e-8, np.float32),
        "project": (rng.standard_normal((2 * bins, dims)) / np.sqrt(2 * bins)).astype(np.float32),
        "classify": (rng.standard_normal((dims, classes)) / np.sqrt(dims)).astype(np.float32),
        "signal_shape": np.array([0, -1, 1], np.int64),
        "axes_time": np.array([1], np.int64),
        "axes_last": np.array([3], np.int64),
    }
    nodes = [
        helper.make_node("Reshape", ["waveform", "signal_shape"], ["signal"]),  # (B, N, 1) real signal
        helper.make_node("STFT", ["signal", "frame_step", "window", "frame_length"], ["spec"], onesided=1),
        helper.make_node("Mul", ["spec", "spec"], ["squares"]),  # (B, frames, bins, 2): re², im²
        helper.make_node("ReduceSum", ["squares", "axes_last"], ["power4"], keepdims=0),
        helper.make_node("Add", ["power4", "eps"], ["power_eps"]),
        helper.make_node("Log", ["power_eps"], ["log_power"]),  # (B, frames, bins)
        helper.make_node("ReduceMean", ["log_power", "axes_time"], ["mean"], keepdims=0),
        helper.make_node("ReduceMean", ["log_power", "axes_time"], ["mean_kept"], keepdims=1),
        helper.make_node("Sub", ["log_power", "mean_kept"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["centred2"]),
        helper.make_node("ReduceMean", ["centred2", "axes_time"], ["variance"], keepdims=0),
        helper.make_node("Sqrt", ["variance"], ["std"]),
        helper.make_node("Concat", ["mean", "std"], ["stats"], axis=1),  # (B, 2·bins)
        helper.make_node("MatMul", ["stats", "project"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "classify"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_spectral_statistics",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dims]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--dims", type=int, default=32)
    args = parser.parse_args()
    onnx.save(build(args.classes, args.dims), args.out)
    print(f"wrote {args.out} (a toy spectral-statistics model, not a trained classifier)")


if __name__ == "__main__":
    main()
