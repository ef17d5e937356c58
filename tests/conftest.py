import os

# Compilation, not arithmetic, is most of this suite's time on a CPU (tiny arrays, hundreds of distinct programs:
# every solver x diffusion x order). So the tests compile with XLA's LLVM back end at optimisation level 0
# (JAX_DISABLE_MOST_OPTIMIZATIONS=1; the HLO graph passes still run and fast-math stays off, so results agree with
# optimised code to rounding): about a third less time for the suite. Set before jax is imported, so the
# pytest-xdist workers, the notebook kernels and the scripts the tests start inherit it; the demo test compiles
# fully optimised, and the benchmarks (run outside pytest) are untouched. DIFFJAX_TEST_FAST_COMPILE=0 restores full
# optimisation (e.g. on a GPU).
# (A shared persistent compilation cache was measured too: no gain, the programs differ from test to test.)
if os.environ.get("DIFFJAX_TEST_FAST_COMPILE", "1") != "0":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402  (after the compiler setting is in the environment)
import pytest  # noqa: E402

# CPU by default (CI has no accelerator); DIFFJAX_TEST_PLATFORM=cuda,cpu runs the suite on a GPU (cpu stays
# listed for jax.debug.callback, used to count model calls).
jax.config.update("jax_platforms", os.environ.get("DIFFJAX_TEST_PLATFORM", "cpu"))


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (orders and tight oracles)."""
    with jax.enable_x64(True):
        yield


# Two tiers. `make test` runs the tests that are not marked slow (every module's unit tests and oracles, minutes);
# `make test-slow` the slow ones (end-to-end runs of the scripts, notebooks and recipes, and the largest numerical
# studies); CI runs both. A test is slow when it is listed in slow_tests.txt (node ids measured at >= 20 s on a
# clean clone; the file says how to regenerate it), so a parametrized case can be slow while its siblings are not.
SLOW_LIST = Path(__file__).with_name("slow_tests.txt")


def slow_node_ids() -> set[str]:
    """The node ids listed in ``slow_tests.txt`` (comment lines start with ``#``)."""
    lines = (line.strip() for line in SLOW_LIST.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test listed in tests/slow_tests.txt (run by `make test-slow`)")


def pytest_collection_modifyitems(config, items):
    slow = slow_node_ids()
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
