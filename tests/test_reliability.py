"""Rows of docs/RELIABILITY.md not covered elsewhere: bfloat16 states on EDM, EDM with a huge σ_max, degenerate
custom diffusions named at construction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj

RING = dj.testbed.ring()


ONE_PER_FAMILY = [
    "ddim",
    "ddpm",
    "dpmpp_3m",
    "unipc_3",
    "ipndm",
    "edm_heun",
    "edm_heun_sde",
    "ode_heun",
    "gddim_3",
    "scire_3",
    "scire_v2",
    "euler_maruyama",
    "pc",
]


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_bfloat16_states_on_edm_run_every_solver(name):
    """EDM's float32 coefficients no longer change the scan carry's dtype: every solver family returns bfloat16
    samples, finite and close to its float32 result (all 23 names were checked once; one per family here)."""
    sde = dj.EDM()
    score = RING.score_fn(sde)
    init = sde.prior_sample(jax.random.key(1), (32, 2))
    x16 = dj.sample(jax.random.key(0), sde, score, solver=name, nfe=8, init=init.astype(jnp.bfloat16))
    x32 = dj.sample(jax.random.key(0), sde, score, solver=name, nfe=8, init=init)
    assert x16.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x16.astype(jnp.float32))))
    if not dj.solvers.get(name).stochastic:
        err = float(jnp.median(jnp.linalg.norm(x16.astype(jnp.float32) - x32, axis=1)))
        assert err < 0.1, err  # bfloat16 keeps ~3 digits (most solvers: 0.001–0.014; iPNDM 0.03, SciRE-3 0.06)


def test_huge_sigma_max_is_not_a_float32_problem():
    """EDM with σ_max = 1e9: float32 samples equal float64 ones (to the float32 round-off of a 1e9-scale start) and
    the exponential integrators still sample the data; what degrades at fixed NFE for Euler-type solvers is their
    discretization of the longer log-σ range (in float64 as well), not the precision."""
    sde = dj.EDM(sigma_max=1e9)
    data = RING.sample(jax.random.key(1), 1000)
    init = np.asarray(sde.prior_sample(jax.random.key(0), (1000, 2)))
    x32 = dj.sample(jax.random.key(0), sde, RING.score_fn(sde), solver="dpmpp_2m", nfe=40, init=init)
    with jax.enable_x64(True):
        x64 = dj.sample(
            jax.random.key(0), sde, RING.score_fn(sde), solver="dpmpp_2m", nfe=40, init=jnp.asarray(init, jnp.float64)
        )
    assert float(jnp.median(jnp.abs(x32 - x64.astype(jnp.float32)))) < 1e-3
    w = dj.metrics.sliced_wasserstein(x32, data, jax.random.key(2))
    w_ref = dj.metrics.sliced_wasserstein(RING.sample(jax.random.key(3), 1000), data, jax.random.key(2))
    assert w < 2.0 * w_ref + 0.02, (w, w_ref)


def test_custom_diffusion_without_noise_or_with_explosive_drift_is_named():
    """One rule refuses every process whose noise never dominates at T: G ≡ 0 with an initial covariance
    (σ/α = 0.316), a drift that outgrows the noise (F = 20, G = 1: σ/α = 0.158 at T), a too short T."""
    with pytest.raises(ValueError, match="never noise-dominated.*0.3162.*adds no noise.*G\\(t\\) = 0"):
        dj.diffusions.custom(F=lambda t: 0.0 * t, G=lambda t: 0.0 * t, T=1.0, initial_cov=0.1)
    with pytest.raises(ValueError, match="never noise-dominated.*0.1581.*signal still dominates"):
        dj.diffusions.custom(F=lambda t: 20.0 + 0.0 * t, G=lambda t: 1.0 + 0.0 * t, T=1.0)
    with pytest.raises(ValueError, match="never noise-dominated"):
        dj.diffusions.custom(F=lambda t: 0.0 * t, G=lambda t: 1.0 + 0.0 * t, T=0.5)  # σ/α = 0.71 at T
    with pytest.raises(ValueError, match="explosive"):
        dj.diffusions.custom(F=lambda t: 50.0 + 0.0 * t, G=lambda t: 1.0 + 0.0 * t, T=1.0)
    ok = dj.diffusions.custom(F=lambda t: 0.0 * t, G=lambda t: 4.0 + 0.0 * t, T=1.0)  # σ/α = 4 at T
    x = dj.sample(jax.random.key(0), ok, RING.score_fn(ok), "ddim", nfe=10, shape=(16, 2))
    assert np.all(np.isfinite(np.asarray(x)))
