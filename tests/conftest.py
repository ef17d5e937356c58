import os

import jax
import pytest

# CPU by default (CI has no accelerator); DIFFJAX_TEST_PLATFORM=cuda,cpu runs the suite on a GPU (cpu stays
# listed for jax.debug.callback, used to count model calls).
jax.config.update("jax_platforms", os.environ.get("DIFFJAX_TEST_PLATFORM", "cpu"))


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (orders and tight oracles)."""
    with jax.enable_x64(True):
        yield
