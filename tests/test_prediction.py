"""Conversions between score, ε, x0 and EDM-denoiser predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.diffusions.recipes import edm_preconditioning
from diffjax.prediction import Model, as_model


@pytest.mark.parametrize("sde", [dj.VP(), dj.VE(), dj.EDM()], ids=["vp", "ve", "edm"])
def test_every_kind_gives_the_same_outputs(sde, x64):
    g = dj.testbed.ring()
    y, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), 8), 0.3 * sde.T)
    t = 0.3 * sde.T
    score, x0 = g.score(sde, y, t), g.denoiser(sde, y, t)
    eps = -sde.sigma(t) * score
    models = [
        Model(sde, g.score_fn(sde), "score"),
        Model(sde, lambda y, t: -sde.sigma(t) * g.score(sde, y, t), "eps"),
        Model(sde, g.denoiser_fn(sde), "x0"),
        as_model(sde, lambda xt, s: g.denoiser(sde, sde.alpha(t) * xt, sde.t_of_rho(s)), "edm"),
    ]
    for m in models:
        np.testing.assert_allclose(m.score(y, t), score, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.eps(y, t), eps, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.x0(y, t), x0, rtol=1e-9, atol=1e-9)
        a, b = m.x0_eps(y, t)
        np.testing.assert_allclose(a, x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(b, eps, rtol=1e-9, atol=1e-9)


def test_conversions_are_finite_at_t_min_in_float32():
    sde = dj.VP()
    g = dj.testbed.ring(std=0.0)  # Dirac data: the hardest case
    t = jnp.float32(sde.t_min)
    y, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), 64), t)
    for kind, fn in [("eps", lambda y, t: g.eps(sde, y, t)), ("x0", g.denoiser_fn(sde)), ("score", g.score_fn(sde))]:
        m = Model(sde, fn, kind)
        for out in (m.x0(y, t), m.eps(y, t), m.score(y, t)):
            assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))


def test_edm_preconditioning_unit_variance(x64):
    """For data N(0, σ_d²): Var(c_in x) = 1 and the optimal F_θ target has unit variance (EDM, Karras et al. 2022,
    App. B.6)."""
    sd = 0.5
    for sigma in (0.01, 0.5, 10.0):
        c_skip, c_out, c_in, _ = edm_preconditioning(sigma, sd)
        np.testing.assert_allclose(c_in**2 * (sd**2 + sigma**2), 1.0, rtol=1e-12)
        # F target = (x0 − c_skip x)/c_out with x = x0 + σ n
        var_target = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
        np.testing.assert_allclose(var_target, 1.0, rtol=1e-12)


def test_bad_kinds():
    with pytest.raises(ValueError, match="unknown prediction kind"):
        Model(dj.VP(), lambda y, t: y, "flow")
    with pytest.raises(ValueError, match="unknown prediction kind"):
        as_model(dj.VP(), lambda y, t: y, "V")
    with pytest.raises(TypeError, match="callable"):
        Model(dj.VP(), 3.0)


def test_fdm_preconditioning(x64):
    """c_in = s_F(σ); the rest is the base model's (EDM: equal to EDM's c_skip, c_out, c_noise)."""
    from diffjax.diffusions.recipes import fdm_preconditioning

    sig = jnp.array([0.01, 1.0, 10.0, 40.0])
    for base in ("edm", "vp", "ve"):
        sde = dj.FDM(base)
        c_skip, c_out, c_in, c_noise = fdm_preconditioning(sde, sig)
        np.testing.assert_allclose(c_in, sde.mean_factor(sde.t_of_rho(sig)), rtol=1e-12)
        assert np.all(np.diff(np.asarray(c_in)) < 0) and float(c_in[0]) == pytest.approx(1.0, abs=1e-3)
    ref = edm_preconditioning(sig, 0.5)
    got = fdm_preconditioning(dj.FDM("edm"), sig)
    for i in (0, 1, 3):
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-12)
    with pytest.raises(TypeError, match="FDM"):
        fdm_preconditioning(dj.EDM(), sig)
