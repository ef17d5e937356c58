"""The exact-score test bed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.testbed import GaussianMixture

SDES = [dj.VP(), dj.VP(sub_vp=True), dj.VE(), dj.EDM()]


def _mixtures():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4))
    dense = np.einsum("kij,klj->kil", a, a) / 4 + 0.05 * np.eye(4)
    return {
        "iso": GaussianMixture([0.2, 0.5, 0.3], rng.normal(size=(3, 4)), [0.1, 0.0, 0.3]),
        "diag": GaussianMixture([0.2, 0.5, 0.3], rng.normal(size=(3, 4)), rng.uniform(0.05, 0.5, size=(3, 4))),
        "dense": GaussianMixture([0.2, 0.5, 0.3], rng.normal(size=(3, 4)), dense),
        "image": GaussianMixture([0.4, 0.6], rng.normal(size=(2, 2, 2, 1)), dense[:2]),
    }


@pytest.mark.parametrize("sde", SDES, ids=lambda s: repr(s)[:20])
@pytest.mark.parametrize("mix", ["iso", "diag", "dense", "image"])
def test_score_equals_autodiff_and_tweedie(sde, mix, x64):
    g = _mixtures()[mix]
    x0 = g.sample(jax.random.key(0), 6)
    t = 0.2 * sde.T
    y, _ = sde.perturb(jax.random.key(1), x0, t)
    score = g.score(sde, y, t)
    auto = jax.vmap(jax.grad(lambda yy: g.log_prob(sde, yy[None], t)[0]))(y)
    np.testing.assert_allclose(score, auto, rtol=1e-9, atol=1e-9)
    # Tweedie: Ψ E[x0|y] = y + Σ ∇log p
    np.testing.assert_allclose(
        sde.alpha(t) * g.denoiser(sde, y, t), y + sde.sigma(t) ** 2 * score, rtol=1e-9, atol=1e-9
    )
    # per-sample times agree with the shared time
    np.testing.assert_allclose(g.score(sde, y, jnp.full((6,), t)), score, rtol=1e-12, atol=1e-12)


def test_log_prob_matches_dense_gaussian_density(x64):
    """One dense component: log N(y; α m, α² C + σ² I) written independently with numpy."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    c = a @ a.T + 0.1 * np.eye(3)
    m = rng.normal(size=3)
    g = GaussianMixture([1.0], m[None], c[None])
    sde = dj.VP()
    t = 0.4
    y = jnp.asarray(rng.normal(size=(5, 3)))
    al, s = float(sde.alpha(t)), float(sde.sigma(t))
    p = al**2 * c + s**2 * np.eye(3)
    r = np.asarray(y) - al * m
    ref = -0.5 * (np.einsum("bi,ij,bj->b", r, np.linalg.inv(p), r) + np.linalg.slogdet(p)[1] + 3 * np.log(2 * np.pi))
    np.testing.assert_allclose(g.log_prob(sde, y, t), ref, rtol=1e-10)


def test_exact_eps_minimises_denoising_loss(x64):
    """ε* = −σ∇log p_t has a lower DSM loss E‖ε_θ(y_t) − z‖² than perturbed predictors."""
    g = _mixtures()["dense"]
    sde = dj.VP()
    t = 0.3
    x0 = g.sample(jax.random.key(2), 40000)
    y, z = sde.perturb(jax.random.key(3), x0, t)
    eps = g.eps(sde, y, t)
    loss = lambda e: float(jnp.mean(jnp.sum((e - z) ** 2, axis=1)))
    best = loss(eps)
    for pert in (0.95 * eps, 1.05 * eps, eps + 0.05, eps + 0.05 * jnp.tanh(y)):
        assert loss(pert) > best


def test_sample_moments(x64):
    g = _mixtures()["dense"]
    x = np.asarray(g.sample(jax.random.key(0), 200000))
    np.testing.assert_allclose(x.mean(0), g.mean(), atol=0.01)
    np.testing.assert_allclose(np.cov(x, rowvar=False), g.covariance(), atol=0.02)


def test_marginal_moments_match_perturbed_samples(x64):
    g = dj.testbed.ring()
    sde = dj.VP()
    m, c = g.marginal_moments(sde, 0.3)
    y, _ = sde.perturb(jax.random.key(0), g.sample(jax.random.key(1), 200000), 0.3)
    np.testing.assert_allclose(np.asarray(y).mean(0), m, atol=0.01)
    np.testing.assert_allclose(np.cov(np.asarray(y), rowvar=False), c, atol=0.01)


def test_ready_made_mixtures():
    r = dj.testbed.ring(num_modes=6)
    assert r.data_shape == (2,) and r.num_components == 6
    d = dj.testbed.digits()
    assert d.data_shape == (64,) and d.num_components == 10 and d.kind == "dense"
    di = dj.testbed.digits(image_shape=True)
    assert di.data_shape == (8, 8, 1)
    x = d.sample(jax.random.key(0), 5)
    assert x.shape == (5, 64) and bool(jnp.all(jnp.isfinite(d.score(dj.VP(), x, 0.5))))


def test_bad_mixture_inputs():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([-1.0], [[0.0]], [1.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([1.0, 1.0], [[0.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, -1.0]]])
    g = dj.testbed.ring()
    with pytest.raises(ValueError, match="data shape"):
        g.score(dj.VP(), jnp.zeros((3, 5)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        g.score(dj.VP(), jnp.zeros((3, 2)), jnp.ones((4,)))


def test_spectral_mixture_frequency_and_image_coordinates_agree(x64):
    """The two coordinate systems of ``spectral`` differ by the orthonormal DCT: scores map by the DCT and
    samples from DCT-related prior draws are DCT-related (VP/EDM samplers are equivariant to rotations)."""
    from scipy.fft import dctn

    freq = dj.testbed.spectral(size=4, num_components=3, coordinates="frequency")
    img = dj.testbed.spectral(size=4, num_components=3, coordinates="image")
    cov = img.covariances()[0]
    ev = np.linalg.eigvalsh(cov)
    assert ev.max() / ev.min() > 10  # a spread spectrum even at 4×4
    to_freq = lambda x: dctn(np.asarray(x), axes=(1, 2), norm="ortho")
    sde = dj.EDM()
    y_img = sde.prior_sample(jax.random.key(0), (8, 4, 4, 1), jnp.float64)
    y_freq = jnp.asarray(to_freq(y_img))
    np.testing.assert_allclose(to_freq(img.score(sde, y_img, 3.0)), freq.score(sde, y_freq, 3.0), rtol=1e-9, atol=1e-12)
    a = dj.sample(jax.random.key(0), sde, img.score_fn(sde), "dpmpp_2m", nfe=8, init=y_img)
    b = dj.sample(jax.random.key(0), sde, freq.score_fn(sde), "dpmpp_2m", nfe=8, init=y_freq)
    np.testing.assert_allclose(to_freq(a), b, rtol=1e-8, atol=1e-10)
    big = dj.testbed.spectral()
    ev = big.evals
    assert big.dim == 256 and ev.max() / ev.min() > 1e4
    with pytest.raises(ValueError, match="coordinates"):
        dj.testbed.spectral(coordinates="pixels")
