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
        ccld = dj.diffusions.custom(
            cld.drift_block, cld.diffusion_block, block_size=2, initial_cov=cld.initial_cov, t_min=cld.t_min
        )
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
    for solver in ("dpmpp_2m", "edm_heun", "gddim", "scire", "unipc"):
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
    for solver in ("gddim", "gddim_3", "gddim_sde", "ode_heun"):
        a = dj.sample(jax.random.key(1), cld, RING.score_fn(cld), solver, nfe=10, init=u0)
        b = dj.sample(jax.random.key(1), ccld, RING.score_fn(ccld), solver, nfe=10, init=u0)
        np.testing.assert_allclose(b, a, atol=1e-6)
    with pytest.raises(ValueError, match="needs a scalar diffusion"):
        dj.sample(jax.random.key(1), ccld, RING.score_fn(ccld), "dpmpp_2m", nfe=10, shape=(4, 2))


def test_blur_from_f_and_g_in_the_dct_basis(x64):
    """Blurring re-declared from its per-frequency f_k(t), g_k(t) alone (initial variance σ(0)², as BDM's)."""
    blur = dj.Blur((4, 4, 1))
    cb = dj.diffusions.custom(
        lambda t: blur.drift_block(t)[..., 0, 0],
        lambda t: blur.diffusion_block(t)[..., 0, 0],
        basis="dct",
        initial_cov=float(blur.sigma(0.0)) ** 2,
        t_min=blur.t_min,
        name="CustomBlur",
    )
    assert isinstance(cb, dj.diffusions.CustomDCT) and cb.coef_ndim == 3
    ts = jnp.array([1e-3, 0.02, 0.3, 0.7, 1.0])
    np.testing.assert_allclose(cb.transition_block(ts, 0.3 * ts), blur.transition_block(ts, 0.3 * ts), rtol=1e-9)
    full = lambda a: np.broadcast_to(a, (len(ts), 4, 4, 1, 1, 1))  # Blur's Σ_t = σ²I is shared by the frequencies
    np.testing.assert_allclose(cb.cov_block(ts), full(blur.cov_block(ts)), rtol=1e-10)
    np.testing.assert_allclose(cb.gddim_factor(np.asarray(ts)), full(blur.gddim_factor(np.asarray(ts))), rtol=1e-10)
    rng = np.random.default_rng(0)
    g = dj.testbed.GaussianMixture(
        [0.5, 0.5], rng.normal(size=(2, 4, 4, 1)), rng.uniform(0.05, 0.3, size=(2, 16)), basis="dct"
    )
    x0 = g.sample(jax.random.key(1), 8)
    y, _ = blur.perturb(jax.random.key(0), x0, 0.3)
    np.testing.assert_allclose(cb.perturb(jax.random.key(0), x0, 0.3)[0], y, atol=1e-10)
    np.testing.assert_allclose(g.score(cb, y, 0.3), g.score(blur, y, 0.3), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(g.denoiser(cb, y, 0.3), g.denoiser(blur, y, 0.3), atol=1e-9)
    y0 = blur.prior_sample(jax.random.key(5), (16, 4, 4, 1))
    for solver in ("gddim", "gddim_sde"):
        a = dj.sample(jax.random.key(1), blur, g.score_fn(blur), solver, nfe=12, init=y0)
        b = dj.sample(jax.random.key(1), cb, g.score_fn(cb), solver, nfe=12, init=y0)
        np.testing.assert_allclose(b, a, atol=1e-8, err_msg=solver)
    with pytest.raises(ValueError, match="needs a scalar diffusion"):
        dj.sample(jax.random.key(1), cb, g.score_fn(cb), "dpmpp_2m", nfe=10, init=y0)
    with pytest.raises(ValueError, match="built for images of shape"):
        cb.to_blocks(jnp.zeros((2, 8, 8, 1)))


def test_per_coordinate_rates_in_pixels(x64):
    """Coordinate i follows VP with β_i = c_i β: α_i = α_VP^{c_i}, σ_i² = 1 − α_i² (closed form), and the
    test-bed score equals the autodiff gradient of the exact log-density."""
    vp, c = dj.VP(), jnp.array([0.5, 1.0, 2.0])
    sde = dj.diffusions.custom(lambda t: -0.5 * c * vp.beta(t), lambda t: jnp.sqrt(c * vp.beta(t)), num_grid=2049)
    assert isinstance(sde, dj.diffusions.CustomDiagonal)
    ts = jnp.array([1e-3, 0.1, 0.5, 1.0])
    a = vp.alpha(ts)[:, None] ** c
    np.testing.assert_allclose(sde.transition_block(ts, 0 * ts)[..., 0, 0], a, rtol=1e-9)
    np.testing.assert_allclose(sde.cov_block(ts)[..., 0, 0], 1 - a**2, rtol=1e-8)
    g = dj.testbed.GaussianMixture(
        [0.3, 0.7], np.array([[1.0, -1.0, 0.5], [-1.0, 0.0, 1.0]]), [[0.1, 0.2, 0.3], [0.2, 0.1, 0.05]]
    )
    y, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), 5), 0.4)
    auto = jax.grad(lambda yy: g.log_prob(sde, yy, 0.4).sum())(y)
    np.testing.assert_allclose(g.score(sde, y, 0.4), auto, atol=1e-10)
    x = dj.sample(jax.random.key(2), sde, g.score_fn(sde), "gddim", nfe=10, shape=(4, 3))
    assert x.shape == (4, 3) and bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(ValueError, match="trailing data axes"):
        dj.sample(jax.random.key(2), sde, g.score_fn(sde), "gddim", nfe=10, shape=(4, 2))
    # diffrax interop: the PF-ODE log-likelihood of Gaussian data equals the closed form per coordinate
    mu, var = np.array([0.3, -0.2, 0.1]), np.array([0.5, 0.2, 0.05])
    gauss = dj.testbed.GaussianMixture([1.0], mu[None], var[None])
    y, _ = sde.perturb(jax.random.key(3), gauss.sample(jax.random.key(4), 4), sde.t_min)
    lp = dj.interop.log_likelihood(
        sde, gauss.score_fn(sde), y, prior_logp=lambda yT: gauss.log_prob(sde, yT, sde.T), rtol=1e-10, atol=1e-10
    )
    a = np.asarray(vp.alpha(sde.t_min)) ** np.asarray(c)
    p = a**2 * var + 1 - a**2
    ref = -0.5 * np.sum((np.asarray(y) - a * mu) ** 2 / p + np.log(2 * np.pi * p), axis=1)
    np.testing.assert_allclose(lp, ref, rtol=1e-7)


def test_custom_diffusion_trains_and_samples():
    from flax import nnx

    import diffjax.data as dd
    from diffjax.training import LossConfig, TrainConfig, Trainer

    cos = dj.diffusions.custom(
        lambda t: -0.5 * jnp.pi * jnp.tan(0.5 * jnp.pi * t),
        lambda t: jnp.sqrt(jnp.pi * jnp.tan(0.5 * jnp.pi * t)),
        T=0.98,
        t_min=1e-3,
        initial_cov=1e-8,
        num_grid=2049,
        name="CosineVP",
    )
    tr = Trainer(
        cos,
        dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(0)),
        dd.toy("ring", 500),
        TrainConfig(steps=3, batch_size=32, progress=False, log_every=1),
        LossConfig(),
    )
    assert np.isfinite(tr.train()[-1]["loss"])
    x = dj.sample(jax.random.key(0), cos, tr.model(), "dpmpp_2m", nfe=5, shape=(8, 2))
    assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))
    t = jnp.linspace(0.01, 0.9, 7)  # cosine schedule: α = cos(πt/2)
    np.testing.assert_allclose(cos.alpha(t), jnp.cos(0.5 * jnp.pi * t), rtol=1e-5)
    # a per-frequency process in the DCT basis (heat dissipation with VP noise) trains and samples with gDDIM
    lam = jnp.asarray(dj.Blur((4, 4, 1)).frequencies())
    heat = dj.diffusions.custom(
        lambda t: -0.5 * (8.0 + 4.0 * lam),
        lambda t: jnp.sqrt(8.0 + 0 * lam),
        basis="dct",
        initial_cov=1e-4,
        num_grid=513,
        name="Heat",
    )
    data = dd.ArraySource(np.asarray(jax.random.uniform(jax.random.key(0), (64, 4, 4, 1), minval=-1, maxval=1)))
    tr = Trainer(
        heat,
        dj.models.MLP((4, 4, 1), 16, 1, rngs=nnx.Rngs(0)),
        data,
        TrainConfig(steps=2, batch_size=8, progress=False, log_every=1),
        LossConfig(),
    )
    assert np.isfinite(tr.train()[-1]["loss"])
    x = dj.sample(jax.random.key(0), heat, tr.model(), "gddim", nfe=5, shape=(3, 4, 4, 1))
    assert x.shape == (3, 4, 4, 1) and bool(jnp.all(jnp.isfinite(x)))


def test_bad_custom_inputs():
    with pytest.raises(ValueError, match="block_size"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0, block_size=3)
    with pytest.raises(ValueError, match="positive definite"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 0.0 * t)
    with pytest.raises(ValueError, match="t_min"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0, T=1.0, t_min=2.0)
    with pytest.raises(ValueError, match=r"singular .* at t = 1$"):  # tan(πt/2) diverges at T = 1
        dj.diffusions.custom(lambda t: -jnp.tan(0.5 * jnp.pi * t), lambda t: 1.0 + 0 * t, T=1.0, num_grid=257)
    with pytest.raises(ValueError, match=r"G\(t\) is not finite at t = 0 "):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0 / jnp.sqrt(t), num_grid=257)
    with pytest.raises(ValueError, match="unknown basis"):
        dj.diffusions.custom(lambda t: -1.0, lambda t: 1.0, basis="fourier")
    with pytest.raises(ValueError, match=r"image shape \(H, W, C\)"):
        dj.diffusions.custom(lambda t: -jnp.ones(3), lambda t: jnp.ones(3), basis="dct")
    with pytest.raises(ValueError, match="one coefficient per coordinate"):
        dj.diffusions.custom(lambda t: -jnp.ones(3), lambda t: jnp.ones(2))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        dj.diffusions.custom(lambda t: jnp.ones(3), lambda t: jnp.ones(3), block_size=2)


def test_closed_forms_are_used_and_checked(x64):
    vp = dj.VP()
    F, G = lambda t: -0.5 * vp.beta(t), lambda t: jnp.sqrt(vp.beta(t))
    exact = dj.diffusions.custom(F, G, num_grid=1025, transition=vp.alpha, covariance=lambda t: vp.sigma(t) ** 2)
    ts = jnp.linspace(1e-3, 1.0, 97)
    np.testing.assert_allclose(exact.log_alpha(ts), vp.log_alpha(ts), rtol=1e-13)  # the closed form, not the tables
    np.testing.assert_allclose(exact.sigma(ts), vp.sigma(ts), rtol=1e-14)
    np.testing.assert_allclose(exact.t_of_rho(vp.rho(ts)), ts, atol=1e-10)
    with pytest.raises(ValueError, match="covariance .* does not solve the kernel ODEs"):
        dj.diffusions.custom(F, G, num_grid=1025, covariance=lambda t: 1.01 * vp.sigma(t) ** 2)
    with pytest.raises(ValueError, match="transition .* does not solve the kernel ODEs"):
        dj.diffusions.custom(F, G, num_grid=1025, transition=lambda t: jnp.exp(-0.5 * vp.beta(t) * t))
