import jax
import pytest

jax.config.update("jax_platforms", "cpu")


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (orders and tight oracles)."""
    with jax.enable_x64(True):
        yield
