"""Shared test configuration: hypothesis profiles and the backend fixture.

Profiles (STYLE.md 16), chosen by ``HYPOTHESIS_PROFILE``:
  dev  few examples, for a quick local loop;
  ci   derandomized, no deadline (the default here and in .ci/run);
  gpu  fewer examples, no deadline (kernel compilation makes first calls slow);
  search  many random examples: run it now and then to find rare draws the fixed ci seeds miss.
"""
import os
import signal

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "gpu", max_examples=15, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(  # a wider, random search for rare draws (several minutes)
    "search", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A suite started in the background of a shell (`make test &`, nohup, some CI launchers) inherits
# Ctrl-C ignored; the tests that send themselves SIGINT need Python's own handler, and the one
# that tests the ignored case sets it itself.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _cupy_params():
    return pytest.param("cupy", marks=pytest.mark.gpu, id="cupy")


@pytest.fixture(params=["numpy", "standin", _cupy_params()])
def backend(request):
    """A float64 byol_ref Backend over numpy, the CuPy stand-in (tests/cupy_standin.py: CuPy's
    host/device rules and namespace, on the CPU) and, gpu-marked, real CuPy."""
    from byol_ref.backend import cupy_status, get_backend

    if request.param == "standin":
        from cupy_standin import install

        with install():
            yield get_backend("cupy", "float64", seed=0)
        return
    if request.param == "cupy":
        ok, reason = cupy_status()
        if not ok:
            pytest.skip(reason)
    yield get_backend(request.param, "float64", seed=0)


@pytest.fixture
def held_elsewhere():
    """``held_elsewhere(path)``: whether an open descriptor other than a new one holds the folder's
    flock (``byol_ref.rundir.RunLock``); two descriptors' locks conflict within one process too.
    Skips where there is no flock (Windows: RunLock holds nothing there)."""
    try:
        import fcntl
    except ImportError:
        pytest.skip("no flock on this platform: RunLock holds nothing there")

    def held(path) -> bool:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    return held
