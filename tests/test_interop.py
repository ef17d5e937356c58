"""diffrax interop: PF-ODE transport, reverse SDE terms and exact likelihoods."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax import interop


@pytest.mark.parametrize("sde", [dj.VP(), dj.VE(), dj.EDM()], ids=["vp", "ve", "edm"])
def test_pf_ode_transports_exact_p_T_onto_p_tmin(sde, x64):
    """Exact p_T samples (the mixture marginal, not the prior) integrated with Dopri8 land on p_{t_min}:
    moments match, and the change-of-variables log-density equals the exact one."""
    g = dj.testbed.GaussianMixture([0.4, 0.6], [[-1.0, 0.0], [1.0, 0.5]], [0.1, 0.05])
    n = 3000
    x0 = g.sample(jax.random.key(0), n)
    y_T, _ = sde.perturb(jax.random.key(1), x0, sde.T)
    y = interop.reference_sample(sde, g.score_fn(sde), y_T, rtol=1e-8, atol=1e-8)
    m, c = g.marginal_moments(sde, sde.t_min)
    y = np.asarray(y)
    np.testing.assert_allclose(y.mean(0), m, atol=5 * np.sqrt(c.max() / n))
    np.testing.assert_allclose(np.cov(y, rowvar=False), c, atol=0.05)
    direct, _ = sde.perturb(jax.random.key(2), g.sample(jax.random.key(3), n), sde.t_min)
    assert dj.metrics.sliced_wasserstein(y, direct) < 0.05


def test_forward_direction_matches_p_T(x64):
    sde = dj.VP()
    g = dj.testbed.ring()
    x, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), 2000), sde.t_min)
    y = interop.reference_sample(sde, g.score_fn(sde), x, t_start=sde.t_min, t_end=sde.T, rtol=1e-7, atol=1e-7)
    m, c = g.marginal_moments(sde, sde.T)
    np.testing.assert_allclose(np.cov(np.asarray(y), rowvar=False), c, atol=0.08)


def test_log_likelihood_exact_on_a_gaussian(x64):
    """Data N(μ, C): with the exact score and exact p_T at the end, the ODE log-likelihood equals the
    closed-form log N(y; αμ, α²C + σ²I); with the N(0, I) prior it differs by at most the prior mismatch."""
    c = np.array([[0.5, 0.1], [0.1, 0.2]])
    mu = np.array([0.3, -0.2])
    g = dj.testbed.GaussianMixture([1.0], mu[None], c[None])
    sde = dj.VP()
    y, _ = sde.perturb(jax.random.key(1), g.sample(jax.random.key(0), 4), sde.t_min)
    exact_end = lambda yT: g.log_prob(sde, yT, sde.T)
    lp = interop.log_likelihood(sde, g.score_fn(sde), y, prior_logp=exact_end, rtol=1e-10, atol=1e-10)
    al, s = float(sde.alpha(sde.t_min)), float(sde.sigma(sde.t_min))
    p = al**2 * c + s**2 * np.eye(2)
    r = np.asarray(y) - al * mu
    ref = -0.5 * (np.einsum("bi,ij,bj->b", r, np.linalg.inv(p), r) + np.linalg.slogdet(p)[1] + 2 * np.log(2 * np.pi))
    np.testing.assert_allclose(lp, ref, rtol=1e-7)
    lp_prior = interop.log_likelihood(sde, g.score_fn(sde), y)
    np.testing.assert_allclose(lp_prior, ref, atol=1e-2)  # N(0, I) vs p_T: |2 y α_T μ| ≈ 5e-3
    # Hutchinson: unbiased, close with many probes
    lp_h = interop.log_likelihood(
        sde, g.score_fn(sde), y, exact=False, key=jax.random.key(5), num_probes=256, prior_logp=exact_end
    )
    np.testing.assert_allclose(lp_h, ref, atol=0.15)


def test_reverse_sde_terms_sample_the_target(x64):
    """diffrax Euler on the reverse-SDE terms from exact p_T reaches p_{t_min} statistically."""
    sde = dj.VP()
    mu, var = np.array([0.5, -0.5]), 0.3
    g = dj.testbed.GaussianMixture([1.0], mu[None], [var])
    n = 2000
    y_T, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), n), sde.T)
    terms = interop.reverse_sde_terms(sde, g.score_fn(sde), jax.random.key(2), y_T, sde.T, sde.t_min)
    sol = diffrax.diffeqsolve(terms, diffrax.Euler(), sde.T, sde.t_min, -1 / 500, y_T, saveat=diffrax.SaveAt(t1=True))
    y = np.asarray(sol.ys[0])
    m, c = g.marginal_moments(sde, sde.t_min)
    np.testing.assert_allclose(y.mean(0), m, atol=5 * np.sqrt(c[0, 0] / n))
    np.testing.assert_allclose(y.var(0), np.diag(c), rtol=0.12)


def test_reference_rejects_bad_times():
    sde = dj.VP()
    with pytest.raises(ValueError, match=r"\(0, T\]"):
        interop.reference_sample(sde, dj.testbed.ring().score_fn(sde), jnp.zeros((2, 2)), t_end=-1.0)
    with pytest.raises(ValueError, match="key"):
        interop.log_likelihood(sde, dj.testbed.ring().score_fn(sde), jnp.zeros((2, 2)), exact=False)
