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
