"""Every test runs on 8 simulated CPU devices, so sharded code paths are exercised everywhere.

The tests' models are tiny, so their time goes mostly to compiling: XLA compiles them without LLVM's backend
optimisations (a quarter less compile time for the tiny train step, code that runs up to 3x slower; side by side
the heaviest test files finish 5-10 % sooner). Everything XLA does to the program itself — fusion, sharding,
layouts — is unchanged, and the parity tests hold the outputs to the original's either way.
"""

import atexit
import os
import pathlib
import shutil
import subprocess
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent XLA compilation cache for the whole run, shared by the worker processes (pytest-xdist starts
# them after this runs, with this environment) and by every process a test launches: a program compiled once
# (the tiny model's train step, sampler, encoders, VAE) is read back, not compiled again. A cached executable is
# the same program, so no number changes. The process that made the folder removes it at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="uniflow-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _find_ref_dir() -> pathlib.Path:
    """UNIFLOW_REF_DIR, else ../shared/upstream_ref beside this checkout, else beside the local checkout this one
    was cloned from (a throwaway `git clone . /tmp/x` has no ../shared of its own)."""
    if "UNIFLOW_REF_DIR" in os.environ:
        return pathlib.Path(os.environ["UNIFLOW_REF_DIR"])
    beside = REPO.parent / "shared" / "upstream_ref"
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if not beside.exists() and origin and pathlib.Path(origin).is_dir():
        return pathlib.Path(origin).resolve().parent / "shared" / "upstream_ref"
    return beside


REF_DIR = _find_ref_dir()


# The files that take longest (minutes each). pytest.ini runs the suite on worker processes (pytest-xdist,
# whole files per worker); handing these out first keeps a long file from starting last on an idle machine.
LONGEST_FILES = ("training/test_train.py", "test_sample.py", "test_convert.py", "data/test_cache.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        where = item.path.relative_to(REPO / "tests").as_posix()
        return LONGEST_FILES.index(where) if where in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the order inside each file is kept


@pytest.fixture(scope="session")
def ref_dir() -> pathlib.Path:
    """The upstream fixtures (../shared/upstream_ref); their absence is an error, not a skip."""
    if not (REF_DIR / "README.md").exists():
        pytest.fail(f"upstream fixtures not found at {REF_DIR} (set UNIFLOW_REF_DIR)")
    return REF_DIR


@pytest.fixture(scope="session", autouse=True)
def eight_devices() -> None:
    assert jax.device_count() == 8, f"expected 8 simulated devices, got {jax.device_count()}"


def _write_video(path: pathlib.Path, seconds: float = 1.2, fps: int = 25, codec: str = "mpeg4") -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, : (i * 3) % 64] = 255  # a bar sweeping across: visual events over time
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="session")
def write_video():
    """``write_video(path, seconds=1.2, fps=25, codec="mpeg4")``: a 64×48 test clip written with PyAV."""
    return _write_video


@pytest.fixture(scope="session", autouse=True)
def sample_command_flags() -> None:
    """The flags of ``python -m uniflow_jax.sample`` (defined only when it runs), for tests that drive its ``main``."""
    from absl import flags

    from uniflow_jax import sample

    if "out_dir" not in flags.FLAGS:
        sample._define_flags()
