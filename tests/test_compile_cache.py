"""dj.sample compiles once per configuration: plain calls reuse the compiled sampler (counted, not timed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diffjax as dj
from diffjax.solvers import driver


@pytest.fixture(autouse=True)
def fresh_cache():
    dj.solvers.clear_cache()
    yield
    dj.solvers.clear_cache()


def test_plain_calls_with_new_keys_compile_once():
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    outs = [dj.sample(jax.random.key(k), sde, score, "dpmpp_2m", nfe=6, shape=(16, 2)) for k in range(3)]
    info = dj.solvers.cache_info()
    assert info["misses"] == 1 and info["hits"] == 2 and info["traces"] == 1, info
    assert not np.allclose(outs[0], outs[1])
    # the cached path gives the samples of a direct (uncached) traced call
    direct = jax.jit(lambda k: dj.sample(k, sde, score, "dpmpp_2m", nfe=6, shape=(16, 2)))(jax.random.key(2))
    np.testing.assert_allclose(outs[2], direct, rtol=1e-6, atol=1e-6)
    # a different NFE is a new configuration: exactly one more compilation
    dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=8, shape=(16, 2))
    assert dj.solvers.cache_info()["traces"] == 2
    # init, sample_offset and per-sample grid indices are arguments, not constants
    y = sde.prior_sample(jax.random.key(9), (16, 2))
    dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=8, init=y)
    dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=8, init=y + 0.1, sample_offset=5)
    assert dj.solvers.cache_info()["traces"] == 3


def test_new_weights_of_the_same_network_do_not_recompile():
    sde = dj.EDM()
    nets = [dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(s)) for s in range(2)]
    models = [dj.models.precondition(sde, net) for net in nets]
    a = dj.sample(jax.random.key(0), sde, models[0], "edm_heun", nfe=5, shape=(8, 2))
    b = dj.sample(jax.random.key(0), sde, models[1], "edm_heun", nfe=5, shape=(8, 2))
    info = dj.solvers.cache_info()
    assert info["traces"] == 1 and info["hits"] == 1, info
    assert not np.allclose(a, b)  # the second call really used the second network's weights
    np.testing.assert_allclose(
        b,
        jax.jit(lambda k: dj.sample(k, sde, models[1], "edm_heun", nfe=5, shape=(8, 2)))(jax.random.key(0)),
        rtol=1e-5,
        atol=1e-5,
    )
    # guided (classifier-free guidance) models are PyTrees too
    labels = jnp.zeros((8,), jnp.int32)
    net = dj.models.MLP((2,), 32, 2, num_classes=3, rngs=nnx.Rngs(0))
    for w in (1.0, 1.0):
        dj.sample(jax.random.key(0), sde, dj.models.guided(sde, net, labels, w, 3), "edm_heun", nfe=5, shape=(8, 2))
    assert dj.solvers.cache_info()["traces"] == 2


def test_cache_is_bounded_and_clearable():
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    old = driver.CACHE.maxsize
    driver.CACHE.maxsize = 2
    try:
        for n in (4, 5, 6):
            dj.sample(jax.random.key(0), sde, score, "ddim", nfe=n, shape=(4, 2))
        assert dj.solvers.cache_info()["size"] == 2
        dj.sample(jax.random.key(0), sde, score, "ddim", nfe=4, shape=(4, 2))  # evicted: compiled again
        assert dj.solvers.cache_info()["traces"] == 4
    finally:
        driver.CACHE.maxsize = old
    dj.solvers.clear_cache()
    assert dj.solvers.cache_info()["size"] == 0


def test_user_jit_and_vmap_still_work():
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    f = jax.jit(lambda k: dj.sample(k, sde, score, "unipc", nfe=5, shape=(4, 2)))
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.vmap(f)(keys)
    np.testing.assert_allclose(
        batched[1], dj.sample(keys[1], sde, score, "unipc", nfe=5, shape=(4, 2)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "sde,data,solver",
    [
        (dj.VE(), dj.testbed.ring(), "dpmpp_2m"),
        (dj.FDM("vp"), dj.testbed.ring(), "edm_heun"),
        (dj.FDM("edm"), dj.testbed.ring(), "ipndm"),
        (dj.CLD(), dj.testbed.ring(), "gddim"),
        (dj.Blur((8, 8, 1)), dj.testbed.digits_dct(), "gddim_3"),
    ],
    ids=["ve", "fdm-vp", "fdm-edm", "cld", "blur"],
)
def test_every_diffusion_samples_through_the_cache(sde, data, solver):
    """Every diffusion's constants are evaluated at trace time inside the cached sampler (a regression: FDM's
    prior std was converted with float() on a tracer)."""
    score = data.score_fn(sde)
    shape = (4,) + data.data_shape
    a = dj.sample(jax.random.key(0), sde, score, solver, nfe=5, shape=shape)
    b = dj.sample(jax.random.key(0), sde, score, solver, nfe=5, shape=shape)
    assert dj.solvers.cache_info()["traces"] == 1
    np.testing.assert_array_equal(a, b)
    assert bool(jnp.all(jnp.isfinite(a)))


def test_trainer_evaluations_reuse_one_compiled_sampler():
    """The trainer samples its EMA model at every evaluation: new weights, same network — one compilation."""
    from diffjax.training import LossConfig, TrainConfig, Trainer

    tr = Trainer(
        dj.EDM(),
        dj.models.MLP((2,), 16, 1, rngs=nnx.Rngs(0)),
        dj.data.toy("ring", 256),
        TrainConfig(
            steps=4,
            batch_size=16,
            eval_every=2,
            eval_samples=32,
            eval_nfe=5,
            eval_solver="edm_heun",
            log_every=2,
            progress=False,
        ),
        LossConfig(),
    )
    tr.train()
    info = dj.solvers.cache_info()
    assert info["traces"] == 1 and info["hits"] >= 1, info


# ---- output checks (no silent failure) ------------------------------------------------------------
def test_wrong_model_output_shapes_raise_before_tracing():
    sde = dj.VP()
    g = dj.testbed.ring()
    k = jax.random.key(0)
    for bad, what in [
        (lambda y, t: g.score(sde, y, t)[:, :1], r"\(4, 1\)"),
        (lambda y, t: jnp.sum(y), r"\(\)"),
        (lambda y, t: g.score(sde, y, t).T, r"\(2, 4\)"),
        (lambda y, t: jnp.concatenate([y, y[:, :1]], axis=1), r"\(4, 3\)"),
    ]:
        with pytest.raises(ValueError, match=what + r" for states of shape \(4, 2\).*must return \(4, 2\)"):
            dj.sample(k, sde, bad, "dpmpp_2m", nfe=4, shape=(4, 2))
    with pytest.raises(ValueError, match="'x0' model must return"):
        dj.sample(k, sde, lambda y, t: y[:, :1], "ddim", nfe=4, shape=(4, 2), kind="x0")
    with pytest.raises(ValueError, match="floating point"):
        dj.sample(k, sde, lambda y, t: (y > 0).astype(jnp.int32), "ddim", nfe=4, shape=(4, 2))


def test_non_finite_samples_name_the_solver_and_the_step():
    sde = dj.VP()
    g = dj.testbed.ring()
    score = lambda y, t: jnp.where(t < 0.3, jnp.nan, 1.0) * g.score(sde, y, t)
    grid = dj.solvers.make_grid(sde, 8, "uniform")
    first_bad = int(np.argmax(grid[1:] < 0.3)) + 1  # the state after the first evaluation at t < 0.3
    with pytest.raises(FloatingPointError, match=rf"'dpmpp_2m'.*step {first_bad + 1} of 8"):
        dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", grid=grid, shape=(4, 2))
    x = dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", grid=grid, shape=(4, 2), check_finite=False)
    assert not bool(jnp.all(jnp.isfinite(x)))  # opt out: the raw result


def test_bad_shapes_dtypes_and_parameters_are_named():
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    k = jax.random.key(0)
    with pytest.raises(ValueError, match=r"whole numbers.*16.5"):
        dj.sample(k, sde, score, "ddim", nfe=4, shape=(16.5, 2))
    with pytest.raises(ValueError, match="init must be floating point, got int32"):
        dj.sample(k, sde, score, "ddim", nfe=4, init=jnp.zeros((4, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"Blur's image shape must be whole numbers"):
        dj.Blur((8.5, 8, 1))
    with pytest.raises(ValueError, match="sigma_max must be a finite number"):
        dj.VE(sigma_max=float("inf"))
    with pytest.raises(ValueError, match="underflows"):
        dj.VP(beta_max=1e4)
    with pytest.raises(ValueError, match="eps_num must be > 0"):
        dj.CLD(eps_num=0.0)
