"""The package's resource files ship inside it and are read through importlib.resources, not the checkout."""

import pathlib

import pytest

import uniflow_jax
from uniflow_jax import resources, tasks
from uniflow_jax.frontends import symbols

PACKAGE = pathlib.Path(uniflow_jax.__file__).parent


def test_every_resource_file_is_listed_and_reads():
    shipped = [p.name for pattern in ("*.json", "*.safetensors") for p in (PACKAGE / "resources").glob(pattern)]
    assert sorted(resources.FILES) == sorted(shipped)
    assert all(resources.path(name).is_file() for name in resources.FILES)
    assert len(tasks.instructions()) == len(tasks.TASKS) and all(len(v) == 10 for v in tasks.instructions().values())
    assert len(symbols.tts_phones()) > 60 and symbols.singer_id("Alto-2") >= 0
    with pytest.raises(KeyError, match="unknown resource"):
        resources.read_text("../setup.py")


def test_no_library_module_reads_outside_the_package():
    """Configs, scripts and the repository root are the user's, not the library's (a wheel has none of them)."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for needle in ("parents[1]", "parents[2]", '"configs"', "'configs'", '/ "data"')
        if needle in path.read_text()
    ]
    assert not offenders, offenders


def test_the_shipped_demo_codec_fits_the_demo_config():
    """The package's demo codec (scripts/train_demo_codec.sh) loads into the VAE of configs/demo.py, its record
    names that architecture, and it reconstructs a tone at about its level (its measured round trip is in the
    record; the demo re-measures it on the demo's own held-out clips)."""
    import json

    import numpy as np

    from uniflow_jax import config_lib
    from uniflow_jax.demo import codec

    checkout = PACKAGE.parent
    config = config_lib.load_config_file(str(checkout / "configs/demo.py"), "demo_data")
    record = json.loads(resources.read_text("demo_codec.json"))
    assert {k: record["vae"][k] for k in ("channels", "latent_dim")} == {
        k: config.model.vae[k] for k in ("channels", "latent_dim")
    }
    assert list(record["vae"]["strides"]) == list(config.model.vae.strides)
    assert record["steps"] > 0 and record["wall_seconds_to_export"] > 0 and record["corpus"]["seed"] == 1
    assert set(record["round_trip"]) == set(tasks.REPORT_ORDER)
    assert resources.path("demo_codec.safetensors").stat().st_size < 5 * 2**20  # the bound for shipping
    vae = codec.load_vae(config, str(resources.path("demo_codec.safetensors")))
    t = np.arange(24000) / 24000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = vae.round_trip(tone)
    assert np.isfinite(decoded).all() and abs(20 * np.log10(np.std(decoded[2400:-2400]) / np.std(tone))) < 3
