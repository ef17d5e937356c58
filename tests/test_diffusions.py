"""Oracles for VP, sub-VP, VE and EDM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.diffusions.blocks import bmm, btrans

SDES = {
    "vp": lambda: dj.VP(),
    "subvp": lambda: dj.VP(sub_vp=True),
    "ve": lambda: dj.VE(),
    "edm": lambda: dj.EDM(),
}


def _times(sde):
    return np.array([0.05, 0.3, 0.7]) * sde.T


@pytest.mark.parametrize("name", SDES)
def test_closed_forms_match_spec(name, x64):
    sde = SDES[name]()
    t = jnp.asarray(_times(sde))
    if name in ("vp", "subvp"):
        b = 0.1 * t + 0.5 * 19.9 * t**2
        beta = 0.1 + 19.9 * t
        a = np.exp(-b / 2)
        np.testing.assert_allclose(sde.alpha(t), a, rtol=1e-12)
        var = (1 - a**2) ** 2 if name == "subvp" else 1 - a**2
        np.testing.assert_allclose(sde.sigma(t) ** 2, var, rtol=1e-12)
        np.testing.assert_allclose(sde.f_scalar(t), -beta / 2, rtol=1e-12)
        g2 = beta * (1 - np.exp(-2 * b)) if name == "subvp" else beta
        np.testing.assert_allclose(sde.g2_scalar(t), g2, rtol=1e-10)
    elif name == "ve":
        s = 0.01 * (50 / 0.01) ** t
        np.testing.assert_allclose(sde.sigma(t), s, rtol=1e-12)
        np.testing.assert_allclose(sde.g2_scalar(t), s**2 * 2 * np.log(50 / 0.01), rtol=1e-10)
        np.testing.assert_allclose(sde.f_scalar(t), 0.0, atol=1e-15)
    else:
        np.testing.assert_allclose(sde.sigma(t), t, rtol=1e-15)
        np.testing.assert_allclose(sde.g2_scalar(t), 2 * t, rtol=1e-12)


def test_vp_small_t_is_stable_in_float32():
    sde = dj.VP()
    s = sde.sigma(jnp.float32(1e-5))
    assert s.dtype == jnp.float32
    np.testing.assert_allclose(s, np.sqrt(0.1 * 1e-5 + 0.5 * 19.9 * 1e-10), rtol=1e-4)


@pytest.mark.parametrize("name", SDES)
def test_rho_inverse_round_trip(name, x64):
    sde = SDES[name]()
    t = jnp.linspace(sde.t_min, sde.T, 50)
    np.testing.assert_allclose(sde.t_of_rho(sde.rho(t)), t, rtol=1e-10)
    np.testing.assert_allclose(sde.t_of_log_snr(sde.log_snr(t)), t, rtol=1e-10)


@pytest.mark.parametrize("name", SDES)
def test_lyapunov_and_transition_odes(name, x64):
    """dΣ/dt = FΣ + ΣFᵀ + GGᵀ and ∂_t Ψ(t,s) = F Ψ(t,s) by central differences."""
    sde = SDES[name]()
    for t in _times(sde):
        h = 1e-6 * sde.T
        dcov = (sde.cov_block(t + h) - sde.cov_block(t - h)) / (2 * h)
        f, g = sde.drift_block(t), sde.diffusion_block(t)
        cov = sde.cov_block(t)
        rhs = bmm(f, cov) + bmm(cov, btrans(f)) + bmm(g, btrans(g))
        np.testing.assert_allclose(dcov, rhs, rtol=1e-6)
        s = 0.5 * t
        dpsi = (sde.transition_block(t + h, s) - sde.transition_block(t - h, s)) / (2 * h)
        np.testing.assert_allclose(dpsi, bmm(f, sde.transition_block(t, s)), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_semigroup_and_composition(name, x64):
    """Ψ(t,s)Ψ(s,r) = Ψ(t,r) and Σ_t = Ψ(t,s)Σ_sΨ(t,s)ᵀ + Σ_{t|s}, with Σ_{t|s} by quadrature of
    ∫ Ψ(t,τ) G Gᵀ(τ) Ψ(t,τ)ᵀ dτ (an independent computation)."""
    sde = SDES[name]()
    t, s, r = 0.8 * sde.T, 0.4 * sde.T, 0.1 * sde.T
    np.testing.assert_allclose(
        bmm(sde.transition_block(t, s), sde.transition_block(s, r)), sde.transition_block(t, r), rtol=1e-12
    )
    taus = jnp.linspace(s, t, 20001)
    g = sde.diffusion_block(taus)
    psi = sde.transition_block(jnp.full_like(taus, t), taus)
    integrand = bmm(bmm(psi, bmm(g, btrans(g))), btrans(psi))
    cond = jnp.trapezoid(integrand, taus, axis=0)
    psi_ts = sde.transition_block(t, s)
    lhs = sde.cov_block(t)
    rhs = bmm(bmm(psi_ts, sde.cov_block(s)), btrans(psi_ts)) + cond
    np.testing.assert_allclose(lhs, rhs, rtol=1e-6)


@pytest.mark.parametrize("name", SDES)
def test_kernel_matches_forward_simulation(name, x64):
    """Euler–Maruyama of the forward SDE from a fixed x0 against Ψ x0 and Σ_t (within 4 standard errors)."""
    sde = SDES[name]()
    n, steps = 20000, 2000
    t0 = 0.05 * sde.T  # start where the known-initial-noise convention does not matter: sample the exact kernel
    t1 = 0.5 * sde.T
    x0 = jnp.array([[0.7]])
    key0, key = jax.random.split(jax.random.key(0))
    y, _ = sde.perturb(key0, jnp.broadcast_to(x0, (n, 1)), t0)
    dt = (t1 - t0) / steps

    def body(y, i):
        t = t0 + i * dt
        z = jax.random.normal(jax.random.fold_in(key, i), y.shape)
        return y + sde.drift(y, t) * dt + sde.diffusion_apply(t, z) * np.sqrt(dt), None

    y, _ = jax.lax.scan(body, y, jnp.arange(steps))
    mean = float(sde.mean(x0, t1)[0, 0])
    var = float(sde.cov_block(t1)[0, 0])
    se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2 / n)
    assert abs(float(y.mean()) - mean) < 4 * se_mean
    assert abs(float(y.var()) - var) < 4 * se_var + 5e-3 * var  # EM bias O(dt)


@pytest.mark.parametrize("name", SDES)
def test_perturb_statistics_and_noise_reconstruction(name, x64):
    sde = SDES[name]()
    x0 = jnp.full((40000, 2), -0.4)
    t = 0.3 * sde.T
    y, z = sde.perturb(jax.random.key(1), x0, t)
    a, s = sde.alpha(t), sde.sigma(t)
    np.testing.assert_allclose(y, a * x0 + s * z, rtol=1e-12, atol=1e-12)
    assert abs(float(y.mean()) - float(a * -0.4)) < 4 * float(s) / np.sqrt(y.size)
    assert abs(float(y.var()) / float(s**2) - 1) < 4 * np.sqrt(2 / y.size)
    # per-sample times
    ts = jnp.linspace(0.1, 0.9, 40000) * sde.T
    y2, z2 = sde.perturb(jax.random.key(2), x0, ts)
    np.testing.assert_allclose(y2, sde.alpha(ts)[:, None] * x0 + sde.sigma(ts)[:, None] * z2, rtol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_prior_matches_marginal_at_T(name, x64):
    """Moment gap and closed-form KL between the exact marginal at T (data N(0.3, 0.5²)) and the prior."""
    sde = SDES[name]()
    a, s = float(sde.alpha(sde.T)), float(sde.sigma(sde.T))
    m, v = a * 0.3, a**2 * 0.25 + s**2
    pv = sde.prior_std**2
    kl = 0.5 * (v / pv + m**2 / pv - 1 + np.log(pv / v))
    assert kl < 1e-3, kl
    x = sde.prior_sample(jax.random.key(0), (20000, 1))
    assert abs(float(x.std()) / sde.prior_std - 1) < 0.03
    lp = sde.prior_logp(x[:3])
    np.testing.assert_allclose(lp, -0.5 * (x[:3, 0] ** 2 / pv + np.log(2 * np.pi * pv)), rtol=1e-12)


def test_bad_hyperparameters_and_names():
    with pytest.raises(ValueError, match="beta_max"):
        dj.VP(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="sigma_max"):
        dj.VE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="t_min"):
        dj.VP(t_min=2.0)
    with pytest.raises(ValueError, match="sigma_min"):
        dj.EDM(sigma_min=-1.0)
    with pytest.raises(ValueError, match="unknown diffusion 'foo'"):
        dj.diffusions.get("foo")
    assert isinstance(dj.diffusions.get("subvp"), dj.VP)
    with pytest.raises(ValueError, match=r"\(0, T\]"):
        dj.VP().check_time(1.5)


def test_diffusions_are_hashable_pytrees():
    sde = dj.VP()
    assert jax.tree.leaves(sde) == []
    assert hash(sde) == hash(dj.VP())
    f = jax.jit(lambda s, x: s.drift(x, 0.5))
    np.testing.assert_allclose(f(sde, jnp.ones((2, 3))), -0.5 * (0.1 + 19.9 * 0.5) * np.ones((2, 3)), rtol=1e-6)
