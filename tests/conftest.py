import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
# This repository's offline archives live in ../shared/data (README); the
# library itself only reads $KRP_DATA_DIR or a path it is given.
os.environ.setdefault(
    "KRP_DATA_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"),
)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# Property tests draw the same examples on every run (no example database),
# so a test run passes or fails the same way each time; the randomized sweep
# runs with HYPOTHESIS_PROFILE=sweep.
from hypothesis import settings  # noqa: E402

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("sweep", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


import pytest  # noqa: E402


def in_ci():
    """Whether the tests run in CI (the `CI` environment variable set, as CI
    services do: `CI=true`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_archive(filename):
    """Skips the calling test when the offline archive `filename` is missing.

    In CI it fails instead: CI bundles its data, so a missing archive there
    is a broken setup, and skipping would let the run pass without the tests
    that train on real data.
    """
    from keras_relaxprune_apps.datasets import _find_archive

    if _find_archive(filename) is not None:
        return
    message = f"{filename} not found (set KRP_DATA_DIR)"
    if in_ci():
        pytest.fail(f"{message}; CI must provide its bundled data", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cifar_available():
    """Skips a test when the offline CIFAR-10 archive is not found (fails in CI)."""
    from keras_relaxprune_apps.datasets import CIFAR10_ARCHIVE

    require_archive(CIFAR10_ARCHIVE)


@pytest.fixture(scope="session")
def camvid_available():
    """Skips a test when the offline CamVid archive is not found (fails in CI)."""
    from keras_relaxprune_apps.datasets import CAMVID_ARCHIVE

    require_archive(CAMVID_ARCHIVE)


@pytest.fixture
def without_xla(monkeypatch):
    """The recipe's fits (`recipe.trainer`) compiled without XLA on TensorFlow.

    On CPU, XLA's compile of a gated or stripped training step takes most of
    a tiny job's time (a cell of the comparison ran in a third of it
    without); what these tests check does not depend on it. The main job's test
    (`test_examples.py`) keeps XLA, as the jobs run it. On JAX nothing
    changes (there `jit_compile=False` would run the steps eagerly).
    """
    import functools

    import keras

    from keras_relaxprune_apps import recipe

    if keras.backend.backend() == "tensorflow":
        monkeypatch.setattr(recipe, "trainer", functools.partial(recipe.trainer, jit_compile=False))
