"""iPNDM: its multistep weights against Adams–Bashforth, exactness on Dirac data, parameter checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.solvers import IPNDM


def test_ipndm_weights_are_adams_bashforth(x64):
    """On a grid uniform in ρ the variable-step weights equal the fixed Adams–Bashforth weights; on a Karras
    grid they differ (after the warm start) but still sum to the step (consistency)."""
    sde = dj.EDM()
    ts = np.linspace(80.0, 0.002, 9)  # EDM: ρ = t, uniform
    fixed = IPNDM().coefficients(sde, ts, None)["pred"]
    var = IPNDM(variant="variable").coefficients(sde, ts, None)["pred"]
    np.testing.assert_allclose(var, fixed, rtol=1e-10, atol=1e-12)
    h = np.diff(ts)
    np.testing.assert_allclose(fixed[3] / h[3], [55 / 24, -59 / 24, 37 / 24, -9 / 24, 0.0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fixed[1] / h[1], [1.5, -0.5, 0, 0, 0], atol=1e-14)
    kt = dj.solvers.make_grid(sde, 8, "karras")
    var_k = IPNDM(variant="variable").coefficients(sde, kt, None)["pred"]
    np.testing.assert_allclose(var_k.sum(1), np.diff(kt), rtol=1e-10)
    assert not np.allclose(var_k[4], IPNDM().coefficients(sde, kt, None)["pred"][4])


@pytest.mark.parametrize("name", ["ipndm", "ipndm_v"])
def test_ipndm_integrates_dirac_data_exactly(name, x64):
    sde = dj.VP()
    mu = jnp.array([0.4, -1.2])
    g = dj.testbed.GaussianMixture([1.0], mu[None], [0.0])
    y_t = sde.prior_sample(jax.random.key(0), (16, 2))
    x = dj.sample(jax.random.key(1), sde, g.score_fn(sde), solver=name, nfe=6, init=y_t)
    grid = dj.solvers.get(name).build_grid(sde, 6, "karras")
    t0, t1 = grid[0], grid[-1]
    exact = sde.alpha(t1) * mu + sde.sigma(t1) / sde.sigma(t0) * (y_t - sde.alpha(t0) * mu)
    np.testing.assert_allclose(x, exact, rtol=1e-9, atol=1e-9)


def test_bad_ipndm_parameters():
    with pytest.raises(ValueError, match="history must be 1, 2, 3 or 4"):
        IPNDM(history=5)
    with pytest.raises(ValueError, match="variant"):
        IPNDM(variant="adaptive")
