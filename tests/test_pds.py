"""PDS against independent oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.solvers import PDS, Preconditioner, PredictorCorrector, preconditioner_from_images


def _random_precond(shape, seed=0):
    rng = np.random.default_rng(seed)
    return Preconditioner(rng.uniform(1.0, 1.25, size=shape), rng.uniform(1.0, 1.25, size=shape))


def test_operators_symmetric_spectral_and_factorised(x64):
    pc = _random_precond((4, 6, 2))
    rng = np.random.default_rng(1)
    u, v = jnp.asarray(rng.normal(size=(1, 4, 6, 2))), jnp.asarray(rng.normal(size=(1, 4, 6, 2)))
    assert abs(float(jnp.sum(pc.apply_a(u) * v) - jnp.sum(u * pc.apply_a(v)))) < 1e-12
    # C has the eigenvalues R on Fourier modes (a real cosine mode with R(k) = R(−k))
    h, w = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    mode = np.cos(2 * np.pi * (1 * h / 4 + 2 * w / 6))[None, :, :, None] * np.ones((1, 1, 1, 2))
    plain = Preconditioner(pc.freq, np.ones((4, 6, 2)))
    np.testing.assert_allclose(plain.apply_m(jnp.asarray(mode)), pc.freq[1, 2] * mode, atol=1e-12)
    # Monte-Carlo covariance of M z equals A = M Mᵀ (dense, from the operator on basis vectors)
    small = _random_precond((3, 3, 1), seed=2)
    eye = jnp.eye(9).reshape(9, 3, 3, 1)
    a_dense = np.asarray(small.apply_a(eye)).reshape(9, 9)
    assert np.all(np.linalg.eigvalsh(0.5 * (a_dense + a_dense.T)) > 0)
    mz = np.asarray(small.apply_m(jax.random.normal(jax.random.key(0), (100000, 3, 3, 1)))).reshape(100000, 9)
    np.testing.assert_allclose(np.cov(mz, rowvar=False), a_dense, atol=0.02)


def test_filters_from_images():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(200, 8, 8, 3)) * np.linspace(0.2, 2, 8)[None, :, None, None]
    pc = preconditioner_from_images(imgs, alpha=5.0)
    for g in (pc.freq, pc.space):
        assert g.min() >= 1.0 - 1e-12 and g.max() <= 1.25 + 1e-12
    assert pc.space[0].mean() > pc.space[-1].mean()  # low-energy rows are boosted
    with pytest.raises(ValueError, match="alpha"):
        preconditioner_from_images(imgs, alpha=1.0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        preconditioner_from_images(imgs[0])


def test_identity_preconditioner_reproduces_pc_bit_for_bit():
    sde = dj.VE()
    g = dj.testbed.GaussianMixture([1.0], np.zeros((1, 4, 4, 2)), [0.5])
    a = dj.sample(
        jax.random.key(0),
        sde,
        g.score_fn(sde),
        PDS(precond=Preconditioner.identity((4, 4, 2))),
        nfe=20,
        shape=(3, 4, 4, 2),
    )
    b = dj.sample(
        jax.random.key(0),
        sde,
        g.score_fn(sde),
        PredictorCorrector(predictor="reverse_diffusion"),
        nfe=20,
        shape=(3, 4, 4, 2),
    )
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_preconditioned_langevin_stationary_variance(x64):
    """ULA x' = x + εAs + √(2ε)Mz on N(0, v) with D = 1: per Fourier mode, variance v/(1 − εR_k²/(2v))."""
    pc = Preconditioner(np.random.default_rng(3).uniform(1.0, 1.6, size=(4, 4, 1)), np.ones((4, 4, 1)))
    v, eps, n = 0.7, 0.2, 4000

    def body(x, i):
        z = jax.random.normal(jax.random.fold_in(jax.random.key(0), i), x.shape)
        return x + eps * pc.apply_a(-x / v) + np.sqrt(2 * eps) * pc.apply_m(z), None

    x, _ = jax.lax.scan(body, jnp.zeros((n, 4, 4, 1)), jnp.arange(300))
    power = np.mean(np.abs(np.fft.fft2(np.asarray(x), axes=(1, 2))) ** 2, axis=0) / 16  # per-mode variance
    expected = v / (1 - eps * pc.freq**2 / (2 * v))
    np.testing.assert_allclose(power, expected, rtol=0.1)


@pytest.mark.parametrize("mode", ["official", "marginal_preserving"])
def test_predictor_bias(mode, x64):
    """Exact score, white Gaussian data of variance c, constant gain r (a = r²): the official predictor ends with
    variance c·a/(2a−1), the marginal-preserving one with c."""
    c, r = 0.5, 1.25
    pc = Preconditioner(np.full((4, 4, 1), r), np.ones((4, 4, 1)))
    g = dj.testbed.GaussianMixture([1.0], np.zeros((1, 4, 4, 1)), [c])
    sde = dj.VE(sigma_max=100.0)
    x = dj.sample(
        jax.random.key(1),
        sde,
        g.score_fn(sde),
        PDS(precond=pc, n_corrector=0, mode=mode),
        nfe=1000,
        shape=(3000, 4, 4, 1),
    )
    a = r**2
    target = c * a / (2 * a - 1) if mode == "official" else c
    np.testing.assert_allclose(float(np.var(np.asarray(x))), target, rtol=0.04)


def test_bad_inputs():
    with pytest.raises(ValueError, match="precond"):
        PDS()
    with pytest.raises(ValueError, match="mode"):
        PDS(precond=Preconditioner.identity((2, 2, 1)), mode="fast")
    with pytest.raises(ValueError, match="shape"):
        Preconditioner(np.ones((2, 2, 1)), np.ones((3, 2, 1)))
    sde = dj.VE()
    g = dj.testbed.GaussianMixture([1.0], np.zeros((1, 4, 4, 1)), [0.5])
    with pytest.raises(ValueError, match="images of shape"):
        dj.sample(
            jax.random.key(0),
            sde,
            g.score_fn(sde),
            PDS(precond=Preconditioner.identity((8, 8, 1))),
            nfe=4,
            shape=(2, 4, 4, 1),
        )
