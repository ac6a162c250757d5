"""Every test runs on 8 simulated CPU devices, so sharded code paths are exercised everywhere.

The tests' models are tiny, so their time goes to compiling, not running: XLA compiles them without LLVM's
backend optimisations (about 40 % less compile time). Everything XLA does to the program itself — fusion,
sharding, layouts — is unchanged, and the parity tests hold the outputs to the original's either way.
"""

import os
import pathlib

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
REF_DIR = pathlib.Path(os.environ.get("UNIFLOW_REF_DIR", REPO.parent / "shared" / "upstream_ref"))


@pytest.fixture(scope="session")
def ref_dir() -> pathlib.Path:
    """The upstream fixtures (../shared/upstream_ref); their absence is an error, not a skip."""
    if not (REF_DIR / "README.md").exists():
        pytest.fail(f"upstream fixtures not found at {REF_DIR} (set UNIFLOW_REF_DIR)")
    return REF_DIR


@pytest.fixture(scope="session", autouse=True)
def eight_devices() -> None:
    assert jax.device_count() == 8, f"expected 8 simulated devices, got {jax.device_count()}"
