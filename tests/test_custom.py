"""User-defined diffusions from F and G alone, against the hand-written closed forms (float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj

RING = dj.testbed.ring()


@pytest.fixture(scope="module")
def pairs():
    with jax.enable_x64(True):
        vp, cld = dj.VP(), dj.CLD()
        cvp = dj.diffusions.custom(lambda t: -0.5 * vp.beta(t), lambda t: jnp.sqrt(vp.beta(t)), t_min=vp.t_min)
        ccld = dj.diffusions.custom(cld.drift_block, cld.diffusion_block, block_size=2, initial_cov=cld.initial_cov,
                                    t_min=cld.t_min)
    return vp, cvp, cld, ccld


def test_vp_from_f_and_g(x64, pairs):
    vp, cvp, _, _ = pairs
    ts = jnp.linspace(1e-3, 1.0, 501)
    np.testing.assert_allclose(cvp.alpha(ts), vp.alpha(ts), rtol=1e-10)
    np.testing.assert_allclose(cvp.sigma(ts), vp.sigma(ts), rtol=1e-10)
    np.testing.assert_allclose(cvp.t_of_rho(vp.rho(ts)), ts, atol=1e-10)
    np.testing.assert_allclose(cvp.f_scalar(ts), vp.f_scalar(ts), rtol=1e-7)
    y = jax.random.normal(jax.random.key(0), (16, 2))
    np.testing.assert_allclose(RING.score(cvp, y, 0.3), RING.score(vp, y, 0.3), atol=1e-9)
    y0 = vp.prior_sample(jax.random.key(5), (32, 2))
    for solver in ("dpmpp_2m", "heun", "gddim", "scire", "unipc"):
        a = dj.sample(jax.random.key(1), vp, RING.score_fn(vp), solver, nfe=10, init=y0)
        b = dj.sample(jax.random.key(1), cvp, RING.score_fn(cvp), solver, nfe=10, init=y0)
        np.testing.assert_allclose(b, a, atol=1e-10)


def test_cld_from_f_and_g(x64, pairs):
    _, _, cld, ccld = pairs
    for t in (1e-3, 0.05, 0.5, 1.0):
        np.testing.assert_allclose(ccld.cov_block(t), cld.cov_block(t), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(ccld.transition_block(t, 0.3 * t), cld.transition_block(t, 0.3 * t), atol=1e-11)
    ts = np.array([1e-3, 0.1, 1.0])
    np.testing.assert_allclose(ccld.gddim_factor(ts), cld.gddim_factor(ts), atol=1e-9)
    u = (jax.random.normal(jax.random.key(0), (16, 2)), jax.random.normal(jax.random.key(1), (16, 2)))
    np.testing.assert_allclose(RING.score(ccld, u, 0.3)[1], RING.score(cld, u, 0.3)[1], atol=1e-8)
    u0 = cld.prior_sample(jax.random.key(5), (32, 2))
    for solver in ("gddim", "gddim_2", "gddim_sde", "ode_heun"):
        a = dj.sample(jax.random.key(1), cld, RING.score_fn(cld), solver, nfe=10, init=u0)
        b = dj.sample(jax.random.key(1), ccld, RING.score_fn(ccld), solver, nfe=10, init=u0)
        np.testing.assert_allclose(b, a, atol=1e-6)
    with pytest.raises(ValueError, match="needs a scalar diffusion"):
        dj.sample(jax.random.key(1), ccld, RING.score_fn(ccld), "dpmpp_2m", nfe=10, shape=(4, 2))


def test_custom_diffusion_trains_and_samples():
    from flax import nnx

    import diffjax.data as dd
    from diffjax.training import LossConfig, TrainConfig, Trainer

    cos = dj.diffusions.custom(lambda t: -0.5 * jnp.pi * jnp.tan(0.5 * jnp.pi * t),
                               lambda t: jnp.sqrt(jnp.pi * jnp.tan(0.5 * jnp.pi * t)), T=0.98, t_min=1e-3,
                               initial_cov=1e-8, num_grid=2049, name="CosineVP")
    tr = Trainer(cos, dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(0)), dd.toy("ring", 500),
                 TrainConfig(steps=3, batch_size=32, progress=False, log_every=1), LossConfig())
    assert np.isfinite(tr.train()[-1]["loss"])
    x = dj.sample(jax.random.key(0), cos, tr.model(), "dpmpp_2m", nfe=5, shape=(8, 2))
    assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))
    t = jnp.linspace(0.01, 0.9, 7)  # cosine schedule: α = cos(πt/2)
    np.testing.assert_allclose(cos.alpha(t), jnp.cos(0.5 * jnp.pi * t), rtol=1e-5)


def test_bad_custom_inputs():
    with pytest.raises(ValueError, match="block_size"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0, block_size=3)
    with pytest.raises(ValueError, match="positive definite"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 0.0 * t)
    with pytest.raises(ValueError, match="t_min"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0, T=1.0, t_min=2.0)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        dj.diffusions.custom(lambda t: jnp.ones(3), lambda t: jnp.ones(3), block_size=2)
