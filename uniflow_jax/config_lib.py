"""The shape of every experiment config, and the model sizes of UniFlow-Audio v1.

Each file in ``configs/`` is a ``get_config()`` that starts from :func:`base_config` and changes a few
fields; modules receive typed dataclasses built here (:func:`dit_config`, :func:`vae_config`), never the
ConfigDict itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import jax
import ml_collections

from uniflow_jax import parallel, tasks
from uniflow_jax.models.adapter import AdapterConfig
from uniflow_jax.models.clip import CLIPVisionConfig
from uniflow_jax.models.dit import DiTConfig
from uniflow_jax.models.fastspeech2 import FastSpeech2Config
from uniflow_jax.models.t5 import T5Config
from uniflow_jax.models.uniflow import UniFlowConfig
from uniflow_jax.models.vae import VAEConfig

# Backbone sizes of the released v1 models (upstream flow_matching_{small,base,large}.yaml) and a tiny one.
DIT_SIZES = {
    "tiny": dict(embed_dim=64, depth=4, num_heads=4),
    "small": dict(embed_dim=768, depth=16, num_heads=12),
    "base": dict(embed_dim=1024, depth=24, num_heads=16),
    "large": dict(embed_dim=1280, depth=28, num_heads=16),
}


def base_config(size: str = "small") -> ml_collections.ConfigDict:
    """Full-size defaults (content width 1024, 128 latent channels, the 24 kHz Oobleck VAE)."""
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.model = ml_collections.ConfigDict()
    config.model.dit = ml_collections.ConfigDict(
        dict(
            **DIT_SIZES[size],
            mlp_ratio=4.0,
            latent_dim=128,
            context_dim=1024,
            ta_context_dim=1024,
            remat="dots",  # keep matmul outputs, recompute the rest: less memory, and on CPU a 10 % faster step
            scan_unroll=1,  # layers per scan iteration; >1 trades compile time for speed on small CPUs
            dtype="auto",  # bfloat16 on TPU/GPU, float32 on CPU (where bf16 is slower)
            attention="xla",  # or "cudnn" (GPU, bf16), "splash" (TPU), or "auto": cudnn where it applies
        )
    )
    config.model.vae = ml_collections.ConfigDict(
        dict(channels=128, c_mults=(1, 2, 4, 8), strides=(2, 4, 6, 10), latent_dim=128, io_channels=1, dtype="float32")
    )
    config.model.sample_rate = 24000
    config.model.content_dim = 1024
    config.model.video_dim = 1024  # CLIP ViT-L/14 pooler output
    config.model.fusion = "dummy"  # or "hybrid"
    config.model.cfg_drop_prob = 0.2
    config.model.loss_weights = (1.0, 1.0, 1.0)  # diffusion, local duration, global duration
    config.model.phoneme = ml_collections.ConfigDict(
        dict(vocab_size=92, d_model=512, num_layers=4, num_heads=2, kernel_size=9, speaker_dim=256)
    )
    config.model.score = ml_collections.ConfigDict(
        dict(vocab_size=61, d_model=512, num_layers=4, num_heads=2, kernel_size=9, num_speakers=20)
    )
    config.model.adapter = ml_collections.ConfigDict(
        dict(num_heads=16, duration_grad_scale=0.1, filter_channels=512, num_layers=5, kernel_size=3)
    )
    # Frozen CLIP ViT-L/14 vision tower: the V2A front end (video frames -> per-frame features).
    config.model.clip = ml_collections.ConfigDict(
        dict(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16)
    )
    # Weights of the frozen encoders (weights/frozen.py); empty = random (tests and toys only).
    config.model.frozen_weights = ml_collections.ConfigDict(dict(vae="", t5="", clip=""))
    # The released instructions/t5_embeddings.h5; empty = encode the instructions with the frozen T5.
    config.model.instructions = ""
    # Frozen Flan-T5-large encoder (captions and instructions).
    config.model.t5 = ml_collections.ConfigDict(
        dict(vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16)
    )

    config.flow = ml_collections.ConfigDict(dict(timestep_sampling="logit_normal", num_steps=25))

    # Input pipeline (uniflow_jax/data/, format: data/README.md). Buckets: static batch shapes, latent frames
    # (50 per second) and content units; the largest must hold the longest crop (TTS up to 20 s).
    config.data = ml_collections.ConfigDict(
        dict(
            train=[],
            val=[],
            task_weights="time_align_balanced",  # a preset (data/pipeline.py) or "t2a:2,tts:1,..."
            buckets=[
                dict(latent=250, phoneme=96, score=96, video=50, text=64),
                dict(latent=500, phoneme=192, score=192, video=100, text=64),
                dict(latent=1000, phoneme=384, score=384, video=100, text=128),
            ],
            crop_seconds=dict(tasks.CROP_SECONDS),  # the original's crops (tasks.Crop)
            max_seconds=dict(tasks.MAX_SECONDS),
            min_seconds=0.3,
            max_file_seconds=600.0,  # longer audio files are skipped (too_long); a crop decodes only its segment
            on_bad_input="skip",  # or "raise"
            video_input="features",  # or "frames": video files, CLIP-encoded in the train step
            tokenizer="",  # SentencePiece model for captions (Flan-T5's spiece.model)
            cache="",  # a latent cache (python -m uniflow_jax.data.cache) to read instead of the manifests
            read_threads=8,  # per task stream
            read_buffer_size=16,
            worker_count=0,  # >0: batches are prepared in that many worker processes
            worker_buffer_size=2,
        )
    )

    # What a run trains ("uniflow", or "vae" for the waveform VAE) and the original recipe (spec section 6).
    config.objective = "uniflow"
    config.train = ml_collections.ConfigDict(
        dict(
            num_steps=300_000,
            global_batch_size=192,
            grad_accum_steps=1,
            log_every=50,
            checkpoint_every=2000,
            keep_checkpoints=2,
            eval_every=2000,
            eval_batches=3,
            sample_every=0,  # >0: audio + spectrograms of every task in TensorBoard
            ema_decay=0.0,  # the original keeps no EMA
            max_nonfinite_in_a_row=20,
            init_from="",  # fine-tune: a safetensors with the original names, or a workdir of ours
            peak_tflops=0.0,  # per device, for MFU; 0 = the table (TPU/GPU), none on CPU
        )
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(
            learning_rate=5e-5,
            warmup_steps=10_000,
            decay_steps=0,  # 0: constant after the warm-up (the original); N: cosine decay to 1 % at step N
            clip_norm=1.0,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.01,
        )
    )
    # Training the VAE itself (objective "vae"): random crops, L1 + multi-resolution STFT + KL.
    config.vae_training = ml_collections.ConfigDict(
        dict(segment_seconds=0.5, kl_weight=1e-4, stft_weight=1.0, l1_weight=1.0, mel_weight=0.0)
    )

    config.mesh = ml_collections.ConfigDict()
    config.mesh.shape = (-1, 1, 1)  # (data, fsdp, tensor); -1 takes the remaining devices
    config.mesh.rules = [list(rule) for rule in parallel.DEFAULT_RULES]
    return config


def compute_dtype(name: str) -> str:
    """``auto`` → bfloat16 on TPU/GPU, float32 on CPU; other names pass through."""
    if name != "auto":
        return name
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def attention_implementation(name: str, dtype: str) -> str:
    """``auto`` → cuDNN's fused attention on GPU in bf16/fp16 (``scripts/accelerator_check.sh`` checks it
    against XLA's on the device), XLA's elsewhere; other names pass through."""
    if name != "auto":
        return name
    return "cudnn" if jax.default_backend() == "gpu" and dtype in ("bfloat16", "float16") else "xla"


def dit_config(config: ml_collections.ConfigDict) -> DiTConfig:
    dit = config.model.dit.to_dict()
    dtype = compute_dtype(dit["dtype"])
    return DiTConfig(**{**dit, "dtype": dtype, "attention": attention_implementation(dit["attention"], dtype)})


def vae_config(config: ml_collections.ConfigDict) -> VAEConfig:
    vae = config.model.vae.to_dict()
    return VAEConfig(
        **{**vae, "c_mults": tuple(vae["c_mults"]), "strides": tuple(vae["strides"])},
        sample_rate=config.model.sample_rate,
    )


def uniflow_config(config: ml_collections.ConfigDict) -> UniFlowConfig:
    """The complete model's typed config; the content width feeds every encoder and the DiT, the VAE's latent
    width the DiT's input and output."""
    m = config.model
    d = m.content_dim
    return UniFlowConfig(
        dit=dataclasses.replace(dit_config(config), context_dim=d, ta_context_dim=d, latent_dim=m.vae.latent_dim),
        vae=vae_config(config),
        phoneme=FastSpeech2Config(**m.phoneme.to_dict(), d_out=d),
        score=FastSpeech2Config(**m.score.to_dict(), d_out=d),
        adapter=AdapterConfig(dim=d, **m.adapter.to_dict()),
        t5=T5Config(**m.t5.to_dict()),
        content_dim=d,
        video_dim=m.video_dim,
        fusion=m.fusion,
        cfg_drop_prob=m.cfg_drop_prob,
        loss_weights=tuple(m.loss_weights),
        timestep_sampling=config.flow.timestep_sampling,
    )


def clip_config(config: ml_collections.ConfigDict) -> CLIPVisionConfig:
    return CLIPVisionConfig(**config.model.clip.to_dict())


def mesh_rules(config: ml_collections.ConfigDict) -> list[tuple[str, str | tuple[str, ...] | None]]:
    return [(name, tuple(axes) if isinstance(axes, (list, tuple)) else axes) for name, axes in config.mesh.rules]


def load_config_file(path: str, *args: str) -> ml_collections.ConfigDict:
    """``get_config(*args)`` of a config file, as ``--config path[:arg]`` would give it (tests and scripts)."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no config file at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)
