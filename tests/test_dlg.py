"""DLG / DMCMC against independent oracles, and the driver's per-sample grids it relies on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

import diffjax as dj
from diffjax.models.classifier import NoiseLevelCNN, NoiseLevelMLP
from diffjax.solvers import DLG, Chains, level_times
from diffjax.training import noise_level_loss, train_noise_classifier

SDE = dj.VE(sigma_max=10.0)


def _gauss(d, c, mu=0.5):
    mu = np.full(d, mu)
    return mu, dj.testbed.GaussianMixture([1.0], mu[None], [c])


# ---- per-sample grids in the driver ----------------------------------------------------------------
@pytest.mark.parametrize("solver", ["edm_heun", "edm_heun_sde", "dpmpp_2m", "gddim", "scire", "euler_maruyama", "pc"])
def test_per_sample_grids_equal_one_grid_per_call(x64, solver):
    data = dj.testbed.ring()
    s = dj.solvers.get(solver)
    nfe = 9 if "edm_heun" in solver else 8
    table = np.stack([s.build_grid(SDE, nfe, s.grid_kind(SDE), t_start=t0) for t0 in (0.7, 0.5, 0.3)])
    x = jax.random.normal(jax.random.key(2), (5, 2))
    idx = jnp.array([0, 2, 1, 2, 0])
    key = jax.random.key(1)
    out = dj.sample(key, SDE, data.score_fn(SDE), solver, nfe=nfe, init=x, grid=table, grid_index=idx)
    for b in range(5):
        ref = dj.sample(key, SDE, data.score_fn(SDE), solver, nfe=nfe, init=x, grid=table[int(idx[b])])
        np.testing.assert_allclose(out[b], ref[b], atol=1e-12)


def test_per_sample_grid_errors():
    data = dj.testbed.ring()
    table = np.stack([dj.solvers.make_grid(SDE, 4, "karras", t_start=t) for t in (0.6, 0.4)])
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="give init"):
        dj.sample(jax.random.key(0), SDE, data.score_fn(SDE), "edm_heun", grid=table, shape=(2, 2))
    with pytest.raises(ValueError, match="grid_index selects"):
        dj.sample(
            jax.random.key(0), SDE, data.score_fn(SDE), "edm_heun", grid=table[0], init=x, grid_index=jnp.zeros(2, int)
        )
    with pytest.raises(ValueError, match="per-sample grids for a batch of 3"):
        dj.sample(jax.random.key(0), SDE, data.score_fn(SDE), "edm_heun", grid=table, init=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="same number of steps"):
        dj.sample(jax.random.key(0), SDE, data.score_fn(SDE), "edm_heun", grid=[table[0], table[1][:-1]], init=x)
    with pytest.raises(ValueError, match="strictly decreasing"):
        dj.sample(jax.random.key(0), SDE, data.score_fn(SDE), "edm_heun", grid=table[:, ::-1], init=x)


# ---- chain invariance with the exact posterior ---------------------------------------------------
def _stationary_chains(data_mu, c, sig, key, batch):
    k1, k2 = jax.random.split(key)
    j = jax.random.randint(k1, (batch,), 0, len(sig))
    x = jnp.asarray(data_mu) + jnp.sqrt(c + jnp.asarray(sig)[j] ** 2)[:, None] * jax.random.normal(
        k2, (batch, len(data_mu))
    )
    return Chains(x, j.astype(jnp.int32))


def test_mala_gibbs_keeps_uniform_levels_and_exact_conditionals(x64):
    d, c, batch, k_levels = 8, 0.3, 2000, 20
    mu, data = _gauss(d, c)
    dlg = DLG(integrator="edm_heun", integrator_nfe=5, levels=k_levels, move="mala", sigma_update="sample", eta=0.3)
    ts, sig = dlg.times(SDE), dlg.sigmas(SDE)
    chains = _stationary_chains(mu, c, sig, jax.random.key(0), batch)
    last, _, trace = dlg.sweeps(
        jax.random.key(1),
        SDE,
        data.score_fn(SDE),
        data.noise_level_logits(SDE, ts),
        chains,
        40,
        log_density=data.log_prob_fn(SDE),
    )
    counts = np.bincount(np.asarray(last.level), minlength=k_levels)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    assert len(np.unique(np.asarray(trace[:, 0]))) > 3  # the levels do move
    ratio = np.asarray(jnp.sum((last.x - mu) ** 2, -1) / d) / (c + sig[np.asarray(last.level)] ** 2)
    assert abs(ratio.mean() - 1) < 4 * np.sqrt(2 / d / batch)


def test_ula_at_a_fixed_level_has_the_predicted_bias(x64):
    d, c, batch, level = 16, 0.2, 4000, 12
    mu, data = _gauss(d, c)
    dlg = DLG(integrator="edm_heun", integrator_nfe=5, levels=16, eta=0.25)
    sig2 = dlg.sigmas(SDE)[level] ** 2
    pinned = lambda x: jnp.zeros((x.shape[0], 16)).at[:, level].set(1.0)  # argmax always returns `level`
    chains = Chains(
        jnp.asarray(mu) + jnp.sqrt(c + sig2) * jax.random.normal(jax.random.key(0), (batch, d)),
        jnp.full((batch,), level, jnp.int32),
    )
    last, _, _ = dlg.sweeps(jax.random.key(1), SDE, data.score_fn(SDE), pinned, chains, 60)
    v = c + sig2
    measured = float(jnp.mean(jnp.sum((last.x - mu) ** 2, -1)) / d)
    predicted = v / (1 - 0.25 / (4 * v))
    assert predicted / v > 1.2  # the bias is large enough to see
    assert abs(measured / predicted - 1) < 4 * np.sqrt(2 / d / batch)


def test_argmax_picks_the_nearest_level(x64):
    d, c, batch = 256, 0.1, 64
    mu, data = _gauss(d, c)
    dlg = DLG(integrator="edm_heun", integrator_nfe=5, levels=30, eta=1e-14)
    ts, sig = dlg.times(SDE), dlg.sigmas(SDE)
    chains = _stationary_chains(mu, c, sig, jax.random.key(3), batch)
    last, _, _ = dlg.sweeps(jax.random.key(1), SDE, data.score_fn(SDE), data.noise_level_logits(SDE, ts), chains, 1)
    r = np.asarray(jnp.sum((chains.x - mu) ** 2, -1)) / d
    # the closed-form posterior of §1.11, written out independently of the test bed
    var = c + sig[None] ** 2
    logpost = -0.5 * d * np.log(var) - 0.5 * d * r[:, None] / var
    np.testing.assert_array_equal(np.asarray(last.level), np.argmax(logpost, -1))
    target = r - c  # the stationary point σ*² of the log-posterior
    for j, t in zip(np.asarray(last.level), target):
        nearest = np.argsort(np.abs(sig**2 - t))[:2]  # one of the two grid levels bracketing σ*²
        assert j in nearest or (t <= sig[-1] ** 2 and j == len(sig) - 1) or (t >= sig[0] ** 2 and j == 0)


# ---- denoising, NFE, composition -----------------------------------------------------------------
def _counting(score, calls):
    def fn(x, t):
        jax.debug.callback(lambda xx: calls.append(xx.shape[0]), x)
        return score(x, t)

    return fn


@pytest.mark.parametrize(
    "integrator,nfe",
    [
        ("edm_heun", 5),
        (dj.solvers.EDMHeun(s_churn=80.0, s_tmin=0.05, s_tmax=1.0), 7),
        ("dpmpp_2m", 4),
        ("gddim", 3),
        ("scire", 4),
        ("euler_maruyama", 6),
        ("pc", 6),
    ],
)
@pytest.mark.parametrize("move", ["ula", "mala"])
def test_dirac_data_denoised_exactly_and_nfe_formula(x64, integrator, nfe, move):
    mu = np.array([0.3, -0.7])
    data = dj.testbed.GaussianMixture([1.0], mu[None], [0.0])
    dlg = DLG(integrator=integrator, integrator_nfe=nfe, levels=30, n_skip=3, eta=1e-3, move=move)
    calls, batch = [], 6
    chains = Chains(
        jnp.asarray(mu) + 0.5 * jax.random.normal(jax.random.key(0), (batch, 2)), jnp.full((batch,), 10, jnp.int32)
    )
    x, last, info = dlg.sample(
        jax.random.key(1),
        SDE,
        _counting(data.score_fn(SDE), calls),
        data.noise_level_logits(SDE, dlg.times(SDE)),
        chains,
        log_density=data.log_prob_fn(SDE),
        return_info=True,
    )
    assert sum(calls) == batch * dlg.nfe == batch * ((2 if move == "mala" else 1) * 3 + nfe + 1)
    if not dj.solvers.get(integrator).stochastic:
        np.testing.assert_allclose(x, np.broadcast_to(mu, x.shape), atol=1e-9)  # Heun/DPM++/gDDIM + Tweedie
    else:
        np.testing.assert_allclose(x, np.broadcast_to(mu, x.shape), atol=1e-6)  # Tweedie still lands on μ
    assert np.all(np.asarray(info["kept_level"]) >= 10)  # the kept state never has a higher level than the start
    assert info["levels"].shape == (3, batch) and last.x.shape == (batch, 2)


def test_init_and_jitted_sample_on_the_ring():
    data = dj.testbed.ring()
    dlg = DLG(integrator="edm_heun", integrator_nfe=5, levels=24, n_skip=4, eta=0.01, burn_in=((20, 0.05), (20, None)))
    clf = data.noise_level_logits(SDE, dlg.times(SDE))
    score = data.score_fn(SDE)
    chains = dlg.init(jax.random.key(0), SDE, score, clf, (256, 2))
    run = jax.jit(lambda k, ch: dlg.sample(k, SDE, score, clf, ch))
    x, chains2 = run(jax.random.key(1), chains)
    x2, _ = run(jax.random.key(2), chains2)
    assert x.shape == (256, 2) and bool(jnp.all(jnp.isfinite(x)))
    ref = data.sample(jax.random.key(3), 4000)
    assert float(dj.metrics.sliced_wasserstein(x, ref, jax.random.key(4))) < 0.15
    assert not np.allclose(x, x2)  # the chains move on between batches


def test_bad_inputs():
    data = dj.testbed.ring()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eta > 0"):
            DLG(eta=bad)
    with pytest.raises(ValueError, match="sigma_update"):
        DLG(sigma_update="mode")
    with pytest.raises(ValueError, match="nfe"):
        DLG(integrator="edm_heun", integrator_nfe=0)
    with pytest.raises(ValueError, match="must lie in"):
        DLG(levels=[0.5, 0.2, 1e-6]).times(SDE)  # below the score model's t_min
    with pytest.raises(ValueError, match="scalar diffusion"):
        DLG().times(dj.CLD())
    dlg = DLG(integrator="edm_heun", integrator_nfe=5, levels=10)
    chains = Chains(jnp.zeros((4, 2)), jnp.zeros((4,), jnp.int32))
    wrong_k = data.noise_level_logits(SDE, level_times(SDE, 12))
    with pytest.raises(ValueError, match="expected \\(B, K\\) = \\(4, 10\\)"):
        dlg.sample(jax.random.key(0), SDE, data.score_fn(SDE), wrong_k, chains)
    with pytest.raises(ValueError, match="needs log_density"):
        DLG(move="mala", levels=10, integrator="edm_heun", integrator_nfe=5).sample(
            jax.random.key(0), SDE, data.score_fn(SDE), data.noise_level_logits(SDE, dlg.times(SDE)), chains
        )
    unstable = DLG(integrator="edm_heun", integrator_nfe=5, levels=10, eta=1e6, n_skip=3)
    with pytest.raises(FloatingPointError, match="eta"):
        unstable.sample(jax.random.key(0), SDE, lambda x, t: x / 0.0, lambda x: jnp.zeros((4, 10)), chains)


# ---- the noise-level classifier ------------------------------------------------------------------
def test_trained_classifier_matches_the_exact_posterior():
    data = dj.testbed.ring()
    k_levels = 16
    ts = level_times(SDE, k_levels)
    clf = NoiseLevelMLP(2, k_levels, (64, 64), rngs=nnx.Rngs(0))
    losses = train_noise_classifier(
        jax.random.key(0), clf, SDE, ts, data.sample, steps=800, batch_size=256, learning_rate=3e-3
    )
    assert np.mean(losses[-50:]) < losses[0]
    x0 = data.sample(jax.random.key(9), 4000)
    j = jax.random.randint(jax.random.key(8), (4000,), 0, k_levels)
    xt, _ = SDE.perturb(jax.random.key(7), x0, jnp.asarray(ts)[j])
    p = jax.nn.log_softmax(data.noise_level_logits(SDE, ts)(xt))
    q = jax.nn.log_softmax(clf(xt))
    kl = float(jnp.mean(jnp.sum(jnp.exp(p) * (p - q), -1)))
    kl_uniform = float(jnp.mean(jnp.sum(jnp.exp(p) * (p + np.log(k_levels)), -1)))
    assert kl < 0.25 and kl < kl_uniform / 4, (kl, kl_uniform)
    # the loss at the exact posterior is the Bayes cross-entropy, below the trained one (up to MC noise)
    exact = lambda x: data.noise_level_logits(SDE, ts)(x)
    l_exact = float(noise_level_loss(exact, jax.random.key(5), SDE, ts, x0))
    l_model = float(noise_level_loss(clf, jax.random.key(5), SDE, ts, x0))
    assert l_exact < l_model + 0.01


def test_cnn_classifier_shapes_and_size():
    cnn = NoiseLevelCNN((32, 32, 3), 1000, rngs=nnx.Rngs(0))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(cnn, nnx.Param)))
    assert 1.35e6 < n < 1.45e6  # ≈1.4 M, 1.03 M of them in the head
    assert cnn(jnp.zeros((2, 32, 32, 3))).shape == (2, 1000)
    big = NoiseLevelCNN((256, 256, 3), 10, pool_strides=(4, 4, 4, 2), rngs=nnx.Rngs(0))
    assert big(jnp.zeros((1, 256, 256, 3))).shape == (1, 10)
    with pytest.raises(ValueError, match="too small"):
        NoiseLevelCNN((8, 8, 1), 10, rngs=nnx.Rngs(0))
