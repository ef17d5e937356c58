"""gDDIM against independent oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax import interop
from diffjax.solvers import GDDIM, gddim_coefficients
from diffjax.solvers.gddim import _stochastic_tables

MIX = dj.testbed.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], [0.05, 0.2])


def _max_err(a, b):
    return max(float(jnp.abs(u - v).max()) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_cld_gaussian_data_is_exact_with_R_and_not_with_L(x64):
    """Dirac x0 with v0 ~ N(0, γM) and the ε_num floor: ε_GT = −R_tᵀ∇log p_t is constant along exact paths,
    so gDDIM lands on the PF-ODE solution in one step and for any order; with L_t it does not."""
    sde = dj.CLD()
    g = dj.testbed.GaussianMixture([1.0], [[0.3, -0.7]], [0.0])
    y_t = sde.prior_sample(jax.random.key(0), (8, 2))
    ref = interop.reference_sample(sde, g.score_fn(sde), y_t, rtol=1e-11, atol=1e-11, return_state=True)
    run = lambda solver, nfe: dj.sample(
        jax.random.key(1), sde, g.score_fn(sde), solver=solver, nfe=nfe, init=y_t, return_state=True
    )
    assert _max_err(run(GDDIM(), 1), ref) < 1e-5  # R_T's solve tolerance × ‖Ψ(t_min, T)‖ ≈ 5e4
    for order in (0, 1, 2):
        assert _max_err(run(GDDIM(degree=order), 10), ref) < 1e-8
    assert _max_err(run(GDDIM(factor="L"), 10), ref) > 1e-3


def test_vp_order0_is_ddim(x64):
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    y_t = sde.prior_sample(jax.random.key(0), (8, 2))
    a = dj.sample(jax.random.key(0), sde, score, solver="gddim", nfe=7, init=y_t)
    b = dj.sample(jax.random.key(0), sde, score, solver="ddim", nfe=7, init=y_t, grid="quadratic")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sde", [dj.VP(), dj.CLD(), dj.Blur((4, 4, 1))], ids=["vp", "cld", "blur"])
def test_coefficient_identities(sde, x64):
    """q = 0: C = R_{t'} − Ψ R_t; Σ_j C_{n,j} = the q = 0 coefficient; integration by parts = quadrature."""
    ts = dj.solvers.make_grid(sde, 12, "quadratic")
    c0 = gddim_coefficients(sde, ts, 0)
    r = sde.gddim_factor(ts)
    psi = np.asarray(sde.transition_block(jnp.asarray(ts[1:]), jnp.asarray(ts[:-1])))
    np.testing.assert_allclose(
        *np.broadcast_arrays(c0[:, 0], r[1:] - np.einsum("...ij,...jk->...ik", psi, r[:-1])), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(gddim_coefficients(sde, ts, 0, method="quadrature")[2:], c0[2:], rtol=1e-6, atol=1e-9)
    c2 = gddim_coefficients(sde, ts, 2)
    np.testing.assert_allclose(c2.sum(axis=1), c0[:, 0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gddim_coefficients(sde, ts, 2, method="quadrature")[2:], c2[2:], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("sde", [dj.VP(t_min=1e-2), dj.CLD(t_min=1e-2)], ids=["vp", "cld"])
def test_measured_order(sde, order, x64):
    """Global error vs Dopri8 (rtol=atol=1e-12) on quadratic grids M = 32…256: slope ≈ r + 1."""
    score = MIX.score_fn(sde)
    y_t = sde.prior_sample(jax.random.key(5), (16, 2))
    ref = interop.reference_sample(sde, score, y_t, rtol=1e-12, atol=1e-12)
    ms = [32, 64, 128, 256]
    errs = [
        float(
            jnp.sqrt(
                jnp.mean(
                    (
                        dj.sample(
                            jax.random.key(0),
                            sde,
                            score,
                            solver=GDDIM(degree=order),
                            init=y_t,
                            grid=dj.solvers.make_grid(sde, m, "quadratic"),
                        )
                        - ref
                    )
                    ** 2
                )
            )
        )
        for m in ms
    ]
    slope = -np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert order + 0.6 < slope < order + 1.5, (slope, errs)


def test_stochastic_step_preserves_gaussian_marginals(x64):
    """Ψ̂ Σ_s Ψ̂ᵀ + P = Σ_t for CLD; λ = 0 gives Ψ̂ R_s = R_t and P = 0; VP λ = 1 is the DDPM posterior."""
    sde = dj.CLD()
    ts = np.array([1.0, 0.6, 0.2, 0.01])
    mm = lambda a, b: np.einsum("...ij,...jk->...ik", a, b)
    for lam in (0.5, 1.0):
        psi_hat, chol = _stochastic_tables(sde, ts, lam)
        cov = np.asarray(sde.cov_block(jnp.asarray(ts)))
        p = mm(chol, np.swapaxes(chol, -1, -2))
        np.testing.assert_allclose(
            mm(mm(psi_hat, cov[:-1]), np.swapaxes(psi_hat, -1, -2)) + p, cov[1:], rtol=1e-7, atol=1e-10
        )
    psi_hat, chol = _stochastic_tables(sde, ts, 0.0)
    r = sde.gddim_factor(ts)
    np.testing.assert_allclose(mm(psi_hat, r[:-1]), r[1:], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(chol, 0.0, atol=1e-6)
    vp = dj.VP()
    ts = np.array([1.0, 0.5, 0.1])
    _, chol = _stochastic_tables(vp, ts, 1.0)
    h = np.diff(np.asarray(vp.log_snr(jnp.asarray(ts))))
    ddpm_var = np.asarray(vp.sigma(jnp.asarray(ts[1:]))) ** 2 * (-np.expm1(-2 * h))
    np.testing.assert_allclose(chol[:, 0, 0] ** 2, ddpm_var, rtol=1e-7)


def test_stochastic_gddim_keeps_the_exact_cld_marginal(x64):
    """Dirac data with the floor (Gaussian ū_0 with covariance Σ_0): any λ keeps u_t ~ N(Ψ ū_0, Σ_t) exactly, so
    the joint (x, v) moments at t_min match the closed form whatever the step count."""
    sde = dj.CLD()
    mu = np.array([0.5])
    g = dj.testbed.GaussianMixture([1.0], mu[None], [0.0])
    n = 6000
    # start from the exact marginal at T rather than the prior, so only the steps are tested
    y_t, _ = sde.perturb(jax.random.key(1), jnp.broadcast_to(jnp.asarray(mu), (n, 1)), sde.T)
    x, v = dj.sample(jax.random.key(0), sde, g.score_fn(sde), solver=GDDIM(lam=1.0), nfe=8, init=y_t, return_state=True)
    u = np.concatenate([np.asarray(x), np.asarray(v)], axis=1)
    mean = np.asarray(sde.to_blocks(sde.mean(jnp.asarray(mu[None]), sde.t_min)))[0, 0]
    cov = np.asarray(sde.cov_block(sde.t_min))
    assert np.all(np.abs(u.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / n)), (u.mean(0), mean)
    np.testing.assert_allclose(np.cov(u, rowvar=False), cov, rtol=0.08, atol=1e-7)


def test_gddim_bad_inputs():
    with pytest.raises(ValueError, match="degree"):
        GDDIM(degree=4)
    with pytest.raises(ValueError, match="degree 0 only"):
        GDDIM(degree=1, lam=0.5)
    with pytest.raises(ValueError, match="lam"):
        GDDIM(lam=-1.0)
    with pytest.raises(ValueError, match="factor"):
        GDDIM(factor="Q")
