"""Flow matching (rectified flow) and the velocity / v predictions: exact conversions, solver orders on the
flow, learned discretizations, and a toy flow-matching (and v-prediction) model that trains and samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax import interop
from diffjax.prediction import Model
from diffjax.training.losses import LossConfig, diffusion_loss

MIX = dj.testbed.ring()


def test_flow_kernel_and_sde_terms_closed_form(x64):
    """α = 1 − t, σ = t, F = −1/(1 − t), G² = 2t/(1 − t), ρ = t/(1 − t) and its inverse; perturb's Monte-Carlo
    moments match the kernel."""
    sde = dj.Flow()
    t = jnp.array([0.01, 0.3, 0.7, 0.99])
    np.testing.assert_allclose(sde.alpha(t), 1 - t, rtol=1e-14)
    np.testing.assert_allclose(sde.sigma(t), t, rtol=1e-14)
    np.testing.assert_allclose(sde.f_scalar(t), -1 / (1 - t), rtol=1e-12)
    np.testing.assert_allclose(sde.g2_scalar(t), 2 * t / (1 - t), rtol=1e-12)
    np.testing.assert_allclose(sde.t_of_rho(sde.rho(t)), t, rtol=1e-12)
    da, ds = sde.alpha_sigma_rates(t)
    np.testing.assert_allclose(da, -1.0) and np.testing.assert_allclose(ds, 1.0)
    x0 = jnp.full((200_000, 1), 2.0)
    u, z = sde.perturb(jax.random.key(0), x0, jnp.float64(0.3))
    np.testing.assert_allclose(u, 0.7 * x0 + 0.3 * z, atol=1e-12)
    assert abs(float(u.mean()) - 1.4) < 4 * 0.3 / np.sqrt(2e5) and abs(float(u.std()) - 0.3) < 3e-3


@pytest.mark.parametrize("bad", [dict(T=1.0), dict(T=1.5), dict(t_min=0.0), dict(t_min=0.9995), dict(t_eps=-1.0)])
def test_flow_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        dj.Flow(**bad)


@pytest.mark.parametrize("sde", [dj.Flow(), dj.VP(), dj.EDM()], ids=["flow", "vp", "edm"])
def test_exact_velocity_is_the_pf_ode_drift_of_the_density(sde, x64):
    """The test bed's velocity E[α̇x0 + σ̇ε | x] equals F x − ½G² ∇log p_t with the score from autodiff of the
    exact log-density (an independent oracle)."""
    y = 1.3 * jax.random.normal(jax.random.key(1), (8, 2))
    for t in (0.8 * sde.T, 0.2 * sde.T, 2 * sde.t_min):
        s = jax.grad(lambda yy: MIX.log_prob(sde, yy, t).sum())(y)
        np.testing.assert_allclose(MIX.velocity(sde, y, t), sde.reverse_drift(y, t, s), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sde", [dj.Flow(), dj.VP()], ids=["flow", "vp"])
@pytest.mark.parametrize("kind", ["v", "velocity"])
def test_v_and_velocity_models_convert_exactly(sde, kind, x64):
    """A model predicting v = αε − σx0 (Salimans & Ho) or the flow velocity gives the exact score, ε and x0, and
    converts back to its own kind (round trip) — for per-sample times too."""
    y = 1.1 * jax.random.normal(jax.random.key(2), (6, 2))
    t = jnp.linspace(0.05, 0.9, 6) * sde.T
    exact = Model(sde, MIX.score_fn(sde), "score")
    x0 = exact.x0(y, t)
    eps = exact.eps(y, t)
    a, s = sde.bcast(sde.alpha(t), y), sde.bcast(sde.sigma(t), y)
    if kind == "v":
        fn = lambda yy, tt: (
            sde.bcast(sde.alpha(tt), yy) * MIX.eps(sde, yy, tt)
            - sde.bcast(sde.sigma(tt), yy) * MIX.denoiser(sde, yy, tt)
        )
    else:
        fn = MIX.velocity_fn(sde)
    m = Model(sde, fn, kind)
    np.testing.assert_allclose(m.x0(y, t), x0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.eps(y, t), eps, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.score(y, t), MIX.score(sde, y, t), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(exact.v(y, t), a * eps - s * x0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        getattr(exact, "v" if kind == "v" else "velocity")(y, t), fn(y, t), rtol=1e-10, atol=1e-10
    )


def test_velocity_kinds_need_a_scalar_diffusion():
    with pytest.raises(ValueError, match="scalar diffusion"):
        Model(dj.CLD(), lambda y, t: y, "velocity")


# one member per family and order (every deterministic name was checked once; the others share these updates)
FLOW_SOLVERS = [
    "ddim",
    "dpmpp_2m",
    "dpmpp_3m",
    "unipc_2",
    "unipc_3",
    "ipndm",
    "ipndm_v",
    "edm_heun",
    "ode_heun",
    "gddim_3",
    "scire_phi1",
    "scire_2m",
]


@pytest.fixture(scope="module")
def flow_problem():
    with jax.enable_x64(True):
        sde = dj.Flow(t_min=1e-2)
        f = MIX.velocity_fn(sde)
        y = sde.prior_sample(jax.random.key(5), (16, 2), jnp.float64)
        ref = interop.reference_sample(sde, f, y, rtol=1e-12, atol=1e-12, kind="velocity")
    return sde, f, y, ref


@pytest.mark.parametrize("name", FLOW_SOLVERS)
def test_every_deterministic_solver_converges_on_the_flow_at_its_order(name, flow_problem, x64):
    """A velocity model on the rectified flow: error at t_min against an adaptive Dopri8 reference on log-SNR grids
    of 64/128/256 steps; the slope of the two finest lies within [declared − 0.3, declared + 1.1] (UniPC-2's
    corrector raises it to 3.0 at these step counts)."""
    sde, f, y, ref = flow_problem
    errs = [
        float(
            jnp.sqrt(
                jnp.mean(
                    (
                        dj.sample(
                            jax.random.key(0),
                            sde,
                            f,
                            solver=name,
                            init=y,
                            kind="velocity",
                            grid=dj.solvers.make_grid(sde, m, "logsnr"),
                        )
                        - ref
                    )
                    ** 2
                )
            )
        )
        for m in (64, 128, 256)
    ]
    d = dj.solvers.get(name).convergence_order
    slope = np.log2(errs[1] / errs[2])
    assert errs[2] < 1e-2 and d - 0.3 <= slope <= d + 1.1, (name, d, slope, errs)


def test_euler_on_the_flow_is_the_rectified_flow_sampler(x64):
    """ODE Euler with a velocity model is x ← x + (t_{i+1} − t_i) û(x, t_i), written out by hand."""
    sde = dj.Flow()
    f = MIX.velocity_fn(sde)
    y = jax.random.normal(jax.random.key(3), (5, 2))
    ts = dj.solvers.make_grid(sde, 6, "uniform")
    x = y
    for t0, t1 in zip(ts[:-1], ts[1:]):
        x = x + (t1 - t0) * f(x, t0)
    out = dj.sample(jax.random.key(0), sde, f, solver="ode_euler", init=y, grid=ts, kind="velocity", denoise=False)
    np.testing.assert_allclose(out, x, rtol=1e-12, atol=1e-12)


def test_learned_discretization_on_the_flow():
    """dj.solvers.learn runs on a velocity model and is never worse than its base on held-out draws."""
    sde = dj.Flow()
    model = Model(sde, MIX.velocity_fn(sde), "velocity")
    learned = dj.solvers.learn(
        jax.random.key(0),
        sde,
        model,
        "dpmpp_2m",
        4,
        (2,),
        num_fit=64,
        num_heldout=64,
        steps=30,
        progress=False,
        teacher=("unipc", 60),
    )
    assert learned.info["heldout_rmse"] <= learned.info["heldout_rmse_base"]
    x = dj.sample(jax.random.key(1), sde, model, solver=learned, nfe=4, shape=(64, 2))
    assert x.shape == (64, 2) and bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize("sde,prediction", [(dj.Flow(), None), (dj.VP(), "v")], ids=["flow-velocity", "vp-v"])
def test_loss_is_minimized_by_the_exact_prediction(sde, prediction, x64):
    """First-order optimality of the training loss (Monte-Carlo): at the exact velocity / v of the test bed, the
    loss's gradient with respect to an output scale and offset vanishes (the prediction is the conditional mean of
    the target); a wrong target (ε for the same network) gives a gradient far from zero."""
    x0 = MIX.sample(jax.random.key(4), 40_000, jnp.float64)
    kind = prediction or sde.default_prediction
    exact = Model(sde, MIX.score_fn(sde), "score")
    out = exact.velocity if kind == "velocity" else exact.v

    def loss(p, cfg):
        net = lambda x, c, labels: p[0] * out(x, c / 999.0) + p[1:]
        return diffusion_loss(sde, net, jax.random.key(7), x0, cfg=cfg)

    p = jnp.array([1.0, 0.0, 0.0])
    grad = jax.grad(loss)(p, LossConfig(prediction=prediction or ""))
    assert float(jnp.max(jnp.abs(grad))) < 0.025, grad  # Monte-Carlo noise ≈ 0.008
    wrong = jax.grad(loss)(p, LossConfig(prediction="eps"))
    assert float(jnp.max(jnp.abs(wrong))) > 0.08, wrong  # measured 0.10 (flow), 0.14 (VP)


@pytest.mark.parametrize("spec", ["flow", "vp-v"])
def test_toy_flow_matching_model_trains_and_samples_with_every_alpha_sigma_solver(spec, tmp_path):
    """A small MLP trained by the Trainer for 400 steps (flow matching with velocity prediction; VP with v-prediction)
    gives
    samples with every α/σ solver that are finite and far closer to the data than the prior is (sliced W2)."""
    from flax import nnx

    from diffjax.training import TrainConfig, Trainer

    sde = dj.Flow() if spec == "flow" else dj.VP()
    src = dj.data.toy("ring", 4096, seed=0)
    net = dj.models.MLP((2,), 128, 3, rngs=nnx.Rngs(0))
    tr = Trainer(
        sde,
        net,
        src,
        TrainConfig(
            steps=400,
            batch_size=256,
            lr=3e-3,
            warmup_steps=50,
            ema_half_life=40.0,
            log_every=100,
            eval_every=0,
            ckpt_every=0,
            progress=False,
        ),
        LossConfig(prediction="" if spec == "flow" else "v"),
    )
    rows = tr.train()
    assert np.isfinite(rows[-1]["loss"])
    model = tr.model()
    assert model.kind == ("velocity" if spec == "flow" else "v")
    data = src.batch(0, 512)[0]
    prior = sde.prior_sample(jax.random.key(9), (512, 2))
    w_prior = float(dj.metrics.sliced_wasserstein(prior, data, jax.random.key(1)))
    for name in ("ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm", "edm_heun", "ode_heun", "scire_2m", "gddim_3"):
        x = dj.sample(jax.random.key(2), sde, model, solver=name, nfe=12, shape=(512, 2))
        w = float(dj.metrics.sliced_wasserstein(x, data, jax.random.key(1)))
        print(f"SW2 {spec} {name} {w:.4f} prior {w_prior:.4f}")
        assert bool(jnp.all(jnp.isfinite(x))) and w < 0.5 * w_prior, (name, w, w_prior)
