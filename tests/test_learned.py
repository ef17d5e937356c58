"""Learned discretizations: traced coefficient tables, gradients through the sampler, learn / optimized_grid,
persistence."""

import dataclasses
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax import interop
from diffjax.solvers.grid_search import cheapest_path
from diffjax.solvers.learn import differentiable_sampler, eval_times_of, grid_from_logits, logits_of_grid

TRACEABLE = [n for n in dj.solvers.available() if dj.solvers.get(n).traceable and not dj.solvers.get(n).stochastic]
MIX = dj.testbed.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], [0.05, 0.2])


def test_traceable_solvers_cover_the_deterministic_families():
    assert {
        "ddim",
        "dpmpp_2m",
        "dpmpp_3m",
        "unipc_3",
        "unipc_2",
        "ipndm",
        "ipndm_v",
        "edm_heun",
        "ode_euler",
        "ode_heun",
        "gddim",
        "gddim_3",
        "scire",
        "scire_v2",
        "scire_3",
        "scire_phi1",
        "scire_2m",
    } <= set(TRACEABLE)


@pytest.mark.parametrize("name", TRACEABLE)
@pytest.mark.parametrize("sde", [dj.VP(), dj.EDM()], ids=["vp", "edm"])
def test_traced_tables_equal_concrete_tables(name, sde):
    """One formula per solver: a jitted (traced) grid gives the float64 numpy tables to 1e-12 under x64 and to
    1e-6 (relative to each table's scale) in float32."""
    solver = dj.solvers.get(name)
    ts = solver.build_grid(sde, 7, solver.grid_kind(sde))
    ref = {k: np.asarray(v, np.float64) for k, v in solver.coefficients(sde, ts, 7).items()}
    for x64, tol in [(True, 1e-12), (False, 1e-6)]:
        with jax.enable_x64(x64):
            traced = jax.jit(lambda t: {k: jnp.asarray(v) for k, v in solver.coefficients(sde, t, 7).items()})(
                jnp.asarray(ts)
            )
        assert set(traced) == set(ref)
        for k, v in ref.items():
            scale = max(np.max(np.abs(v)), 1e-30)
            err = np.max(np.abs(np.asarray(traced[k], np.float64) - v)) / scale
            assert err <= tol, (name, k, x64, err)


@pytest.mark.parametrize(
    "name,sde",
    [
        ("dpmpp_3m", dj.VP()),
        ("unipc", dj.EDM()),
        ("ipndm", dj.EDM()),
        ("edm_heun", dj.VP()),
        ("ddim", dj.VE()),
        ("gddim_3", dj.VP()),
        ("scire_3", dj.EDM()),
        ("scire_2m", dj.VP()),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_gradient_wrt_grid_matches_finite_differences(name, sde, x64):
    solve, ts0, _ = differentiable_sampler(sde, MIX.score_fn(sde), name, 6, dtype=jnp.float64)
    y = sde.prior_sample(jax.random.key(0), (8, 2), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (8, 2), jnp.float64)
    f = lambda ts: jnp.sum(w * solve(ts, {}, y))
    ts = jnp.asarray(ts0)
    g = jax.grad(f)(ts)
    for i in range(1, len(ts0) - 1):  # interior times (the end points are fixed when learning)
        h = 1e-6 * float(ts0[i])
        fd = (f(ts.at[i].add(h)) - f(ts.at[i].add(-h))) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-5, atol=1e-8 * max(1.0, abs(float(fd))))


def test_gradient_wrt_corrections_matches_finite_differences(x64):
    sde = dj.EDM()
    solve, ts0, budget = differentiable_sampler(sde, MIX.score_fn(sde), "dpmpp_3m", 5, dtype=jnp.float64)
    y = sde.prior_sample(jax.random.key(0), (8, 2), jnp.float64)
    ts = jnp.asarray(ts0)
    f = lambda d: jnp.sum(solve(ts, {"pred": d}, y) ** 2)
    d0 = jnp.zeros((5, 4))
    g = jax.grad(f)(d0)
    for idx in [(0, 0), (2, 1), (4, 2)]:
        e = jnp.zeros_like(d0).at[idx].set(1e-6)
        np.testing.assert_allclose(g[idx], (f(d0 + e) - f(d0 - e)) / 2e-6, rtol=1e-5)
    assert float(g[1, 3]) == 0.0  # a weight on a history entry that does not exist yet has no effect


@pytest.mark.parametrize("solver", ["edm_heun", "ipndm"])
def test_gradient_wrt_decoupled_evaluation_times_matches_finite_differences(solver, x64):
    """Through the time map of the network input (Heun evaluates at both ends of a step, iPNDM once)."""
    sde = dj.VP()
    solve, ts0, _ = differentiable_sampler(sde, MIX.score_fn(sde), solver, 6, dtype=jnp.float64)
    y = sde.prior_sample(jax.random.key(0), (8, 2), jnp.float64)
    ts = jnp.asarray(ts0)
    f = lambda d: jnp.sum(solve(ts, {}, y, eval_times_of(sde, ts, d)) ** 2)
    d0 = 0.1 * jax.random.normal(jax.random.key(2), (len(ts0) - 1,), jnp.float64)
    g = jax.grad(f)(d0)
    for i in range(len(ts0) - 1):
        e = jnp.zeros_like(d0).at[i].set(1e-6)
        np.testing.assert_allclose(g[i], (f(d0 + e) - f(d0 - e)) / 2e-6, rtol=1e-5, atol=1e-9)
    assert np.all(np.abs(np.asarray(g)) > 0)  # every evaluation time moves the endpoint


def test_decoupled_evaluation_times_stay_ordered_within_half_a_step(x64):
    sde = dj.VP()
    ts = dj.solvers.make_grid(sde, 6, "logsnr")
    lr = np.log(np.asarray(sde.rho(ts)))
    for d in (np.zeros(6), np.full(6, 50.0), np.full(6, -50.0), np.array([3.0, -3, 3, -3, 3, -3])):
        te = eval_times_of(sde, ts, d)
        lre = np.log(np.asarray(sde.rho(te)))
        assert np.all(np.diff(te) < 0) and te[0] <= sde.T and te[-1] == ts[-1]
        half = 0.5 * np.minimum(np.abs(np.diff(lr))[np.r_[0, 0:5]], np.abs(np.diff(lr)))
        assert np.all(np.abs(lre[:-1] - lr[:-1]) <= half + 1e-12)
        if not d.any():
            np.testing.assert_allclose(te, ts, rtol=1e-13)


def test_grid_parameterization_round_trip(x64):
    sde = dj.VP()
    ts = dj.solvers.make_grid(sde, 9, "karras")
    back = grid_from_logits(sde, logits_of_grid(sde, ts), ts[0], ts[-1])
    np.testing.assert_allclose(back, ts, rtol=1e-10)
    traced = jax.jit(lambda l: grid_from_logits(sde, l, ts[0], ts[-1]))(jnp.asarray(logits_of_grid(sde, ts)))
    np.testing.assert_allclose(traced, ts, rtol=1e-10)


def test_cheapest_path_matches_brute_force():
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.1, 1.0, (9, 9))
    j, k = np.indices(costs.shape)
    costs = np.where(k > j, costs, np.inf)
    for m in (1, 3, 5, 8):
        best = min(
            itertools.combinations(range(1, 8), m - 1),
            key=lambda mid: sum(costs[a, b] for a, b in zip((0,) + mid, mid + (8,))),
        )
        path = cheapest_path(costs, m)
        assert path == [0, *best, 8]


def _ref(sde, score, y):
    return interop.reference_sample(sde, score, y, rtol=1e-6, atol=1e-6)


def _rmse(a, b):
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def ring_learned():
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    learned = dj.solvers.learn(
        jax.random.key(0), sde, score, "ipndm", 5, (2,), num_fit=128, num_heldout=128, steps=80, progress=False
    )
    return sde, score, learned


def test_learn_beats_the_base_solver_on_fresh_draws(ring_learned):
    sde, score, learned = ring_learned
    info = learned.info
    assert info["heldout_rmse"] < 0.8 * info["heldout_rmse_base"], info
    ts = np.asarray(learned.times)
    assert ts[0] == sde.T and ts[-1] == sde.t_min and np.all(np.diff(ts) < 0)
    assert learned.corrections and dict(learned.corrections)["pred"]
    # draws used neither for fitting nor for selection, against an independent reference
    y = sde.prior_sample(jax.random.key(123), (256, 2))
    ref = _ref(sde, score, y)
    base = _rmse(dj.sample(jax.random.key(0), sde, score, "ipndm", nfe=5, init=y), ref)
    ours = _rmse(dj.sample(jax.random.key(0), sde, score, learned, nfe=5, init=y), ref)
    assert ours < 0.8 * base, (ours, base)


def test_learned_solver_spends_exactly_nfe_and_round_trips(ring_learned, tmp_path):
    sde, score, learned = ring_learned
    g = dj.testbed.ring()
    calls = []

    def counting(y, t):
        jax.debug.callback(lambda: calls.append(1))
        return g.score(sde, y, t)

    jax.block_until_ready(dj.sample(jax.random.key(0), sde, counting, learned, nfe=5, shape=(2, 2)))
    assert len(calls) == 5
    path = learned.save(str(tmp_path / "ipndm5.json"))
    loaded = dj.solvers.load(path)
    assert loaded == learned
    a = dj.sample(jax.random.key(3), sde, score, learned, nfe=5, shape=(64, 2))
    b = dj.sample(jax.random.key(3), sde, score, loaded, nfe=5, shape=(64, 2))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    obj = json.load(open(path))
    assert obj["diffusion"]["class"] == "EDM" and obj["nfe"] == 5 and len(obj["grid"]) == 6
    assert obj["info"]["heldout_rmse"] < obj["info"]["heldout_rmse_base"]


def test_version_1_files_load_with_todays_field_names(ring_learned):
    """Files written before the solver fields were renamed (format version 1: ``order``, SciRE's ``method``) load
    as the same solver: the learned iPNDM's samples are bit-identical, and a v1 multistep SciRE becomes
    ``SciREMultistep``."""
    from diffjax.solvers.learned import from_json

    sde, score, learned = ring_learned
    old = learned.to_json()
    old["version"] = 1
    fields = dict(old["base"]["fields"])
    fields["order"] = fields.pop("history")
    old["base"] = {"class": "IPNDM", "fields": fields}
    loaded = from_json(old)
    assert loaded == learned and loaded.base.history == learned.base.history
    a = dj.sample(jax.random.key(3), sde, score, learned, nfe=5, shape=(16, 2))
    np.testing.assert_array_equal(a, dj.sample(jax.random.key(3), sde, score, loaded, nfe=5, shape=(16, 2)))
    scire = {
        "version": "v1",
        "order": 3,
        "method": "multistep",
        "phi": "const",
        "m": 3,
        "intermediate": "code",
        "grid": None,
    }
    obj = {
        **old,
        "base": {"class": "SciRE", "fields": scire},
        "corrections": {},
        "diffusion": None,
        "grid": [float(t) for t in dj.solvers.make_grid(sde, 5, "nsr")],
    }
    base = from_json(obj).base
    assert base == dj.solvers.SciREMultistep(history=3), base
    obj["version"] = 7
    with pytest.raises(ValueError, match="format version 7"):
        from_json(obj)


def test_learned_solver_misuse_raises(ring_learned, tmp_path):
    sde, score, learned = ring_learned
    with pytest.raises(ValueError, match=r"learned for EDM\(sigma_min=0.002.*not for VP"):
        dj.sample(jax.random.key(0), dj.VP(), dj.testbed.ring().score_fn(dj.VP()), learned, nfe=5, shape=(2, 2))
    with pytest.raises(ValueError, match=r"not for EDM\(sigma_min=0.002, sigma_max=40.0"):
        dj.sample(jax.random.key(0), dj.EDM(sigma_max=40.0), score, learned, nfe=5, shape=(2, 2))
    with pytest.raises(ValueError, match="fitted for nfe=5; got nfe=6"):
        dj.sample(jax.random.key(0), sde, score, learned, nfe=6, shape=(2, 2))
    with pytest.raises(ValueError, match="own grid"):
        dj.sample(jax.random.key(0), sde, score, learned, nfe=5, grid="karras", shape=(2, 2))
    with pytest.raises(ValueError, match="belong to the learned grid"):
        dj.sample(jax.random.key(0), sde, score, learned, grid=dj.solvers.make_grid(sde, 5, "karras"), shape=(2, 2))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "diffjax.learned_solver", "version": 1, "grid": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        dj.solvers.load(str(bad))
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a diffjax learned solver"):
        dj.solvers.load(str(bad))
    obj = learned.to_json()
    obj["grid"] = obj["grid"][:-1]
    bad.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="does not spend the recorded nfe=5"):
        dj.solvers.load(str(bad))
    with pytest.raises(FileNotFoundError, match="no learned solver"):
        dj.solvers.load(str(tmp_path / "missing.json"))


def test_learn_rejects_what_it_cannot_fit():
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="deterministic solver whose coefficients are traceable"):
        dj.solvers.learn(k, sde, score, "euler_maruyama", 5, (2,))
    with pytest.raises(ValueError, match="traceable"):
        dj.solvers.learn(k, sde, score, dj.solvers.GDDIM(degree=1, factor="L"), 5, (2,))
    with pytest.raises(ValueError, match="no learnable coefficient tables"):
        dj.solvers.learn(k, sde, score, "ode_euler", 5, (2,), what="grid+coefs")
    with pytest.raises(ValueError, match="scalar diffusion"):
        dj.solvers.learn(k, dj.CLD(), score, "ddim", 5, (2,))
    for bad in ("time", "grid+grid", "", "grid,coefs"):
        with pytest.raises(ValueError, match="what must join distinct parts"):
            dj.solvers.learn(k, sde, score, "ddim", 5, (2,), what=bad)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        dj.solvers.learn(k, sde, score, "ddim", 5, (2,), steps=0)
    with pytest.raises(ValueError, match="num_fit must be a positive integer"):
        dj.solvers.learn(k, sde, score, "ddim", 5, (2,), num_fit=0)
    with pytest.raises(ValueError, match="init_grid has 3 steps"):
        dj.solvers.learn(k, sde, score, "ddim", 5, (2,), init_grid=[80.0, 1.0, 0.1, 0.002])
    for name, bad in (("learning_rate", float("inf")), ("history_scale", -1.0), ("coef_scale", float("nan"))):
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
            dj.solvers.learn(k, sde, score, "ipndm", 5, (2,), **{name: bad})
    with pytest.raises(ValueError, match="soft_radius must be a finite number >= 0"):
        dj.solvers.learn(k, sde, score, "ipndm", 5, (2,), soft_radius=-0.1)
    tiny = dict(num_fit=8, num_heldout=8, init_grid="base", teacher=("unipc", 20), progress=False)
    assert dj.solvers.learn(k, sde, score, "ipndm", 4, (2,), steps=1, **tiny).info["steps_run"] == 1  # no warm-up


def test_optimized_grid_is_never_worse_than_the_default_on_its_batch():
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    opt = dj.solvers.optimized_grid(jax.random.key(0), sde, score, "dpmpp_2m", 6, (2,), num=64, candidates=40)
    errs = opt.info["teacher_batch_rmse"]
    assert errs[opt.info["chosen"]] == min(errs.values()) <= errs["default"]
    assert len(opt.times) == 7 and opt.times[0] == sde.T and opt.times[-1] == sde.t_min
    x = dj.sample(jax.random.key(0), sde, score, opt, nfe=6, shape=(8, 2))
    assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))


def test_learn_variants_coefs_only_and_soft_teacher():
    """``what="coefs"`` keeps the start grid and learns weights; LD3's soft loss runs with latent shifts; both
    are never worse than the base on the held-out draws (the fallback guarantee)."""
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    opts = dict(num_fit=64, num_heldout=64, steps=30, progress=False, teacher=("unipc", 60))
    coefs = dj.solvers.learn(jax.random.key(0), sde, score, "dpmpp_2m", 4, (2,), what="coefs", init_grid="base", **opts)
    np.testing.assert_array_equal(coefs.times, dj.solvers.get("dpmpp_2m").build_grid(sde, 4, "logsnr"))
    assert coefs.info["heldout_rmse"] <= coefs.info["heldout_rmse_base"]
    soft = dj.solvers.learn(jax.random.key(0), sde, score, "ddim", 4, (2,), loss="soft", **opts)
    assert soft.info["loss"] == "soft" and soft.info["heldout_rmse"] <= soft.info["heldout_rmse_base"]
    assert dict(soft.corrections).keys() <= {"alpha_next", "c_eps"}


@pytest.mark.parametrize("sde", [dj.VP(), dj.EDM()], ids=["vp", "edm"])
def test_exported_sigmas_reproduce_the_grid_only_samples(sde):
    """``grid_as`` gives the k-diffusion / diffusers noise levels ρ = σ/α of the fitted grid (checked against
    ρ² = e^{B(t)} − 1 for VP, ρ = t for EDM); turned back into a grid by ``grid_from_sigmas`` and run by the base
    solver, they reproduce the learned solver's samples exactly."""
    score = dj.testbed.ring().score_fn(sde)
    fitted = dj.solvers.optimized_grid(jax.random.key(1), sde, score, "dpmpp_2m", 5, (2,), num=32, candidates=40)
    assert not fitted.corrections
    sigmas = fitted.grid_as(sde)
    t = np.asarray(fitted.times, np.float64)
    by_hand = np.sqrt(np.expm1(0.1 * t + 0.5 * 19.9 * t**2)) if isinstance(sde, dj.VP) else t
    np.testing.assert_allclose(sigmas, by_hand, rtol=1e-12)
    np.testing.assert_array_equal(fitted.grid_as(sde, "t"), t)
    grid = dj.solvers.grid_from_sigmas(sde, [float(s) for s in sigmas])  # as a plain list, like other libraries'
    np.testing.assert_allclose(grid, t, rtol=1e-12)
    assert grid[0] == sde.T
    y = sde.prior_sample(jax.random.key(5), (64, 2))
    a = dj.sample(jax.random.key(0), sde, score, fitted, nfe=5, init=y)
    b = dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=5, init=y, grid=grid)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


def test_grid_export_refuses_what_does_not_transfer(ring_learned):
    sde, _, learned = ring_learned  # fitted with coefficient corrections
    with pytest.raises(ValueError, match="fit what='grid'"):
        learned.grid_as(sde)
    assert len(learned.grid_as(sde, ignore_corrections=True)) == 6
    timed = dataclasses.replace(learned, corrections=(), eval_times=learned.times)
    with pytest.raises(ValueError, match="decouples its evaluation times"):
        timed.grid_as(sde)
    with pytest.raises(ValueError, match="unknown grid form 'timesteps'"):
        learned.grid_as(sde, "timesteps", ignore_corrections=True)
    with pytest.raises(ValueError, match="not for VP"):
        learned.grid_as(dj.VP(), ignore_corrections=True)
    with pytest.raises(ValueError, match="drop the trailing 0"):
        dj.solvers.grid_from_sigmas(sde, [80.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        dj.solvers.grid_from_sigmas(sde, [1.0, 80.0])
    with pytest.raises(ValueError, match="T\\]"):
        dj.solvers.grid_from_sigmas(sde, [200.0, 1.0])


def test_learned_evaluation_times_improve_on_the_grid_alone_and_round_trip(tmp_path):
    """``what="grid+times"`` starts where ``"grid"`` does and fits more: better on the held-out draws here (0.075
    vs 0.107; after 40 steps on 64 draws it is not: a short fit of more parameters may not be). The times are
    stored, reloaded and used by dj.sample; eval_times equal to the grid is no decoupling, bit for bit."""
    sde, score, timed, y, a = _fit_beats_the_grid_and_round_trips(tmp_path, 4, "grid+times")
    assert len(timed.eval_times) == 5 and timed.eval_times != timed.times
    plain = dataclasses.replace(timed, eval_times=())
    same = dataclasses.replace(timed, eval_times=timed.times)
    b = dj.sample(jax.random.key(0), sde, score, plain, nfe=4, init=y)
    np.testing.assert_array_equal(
        np.asarray(b), np.asarray(dj.sample(jax.random.key(0), sde, score, same, nfe=4, init=y))
    )
    assert not np.allclose(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="eval_times must be 5 finite"):
        dataclasses.replace(timed, eval_times=timed.times[:-1])
    with pytest.raises(ValueError, match="reach beyond T"):
        dj.sample(
            jax.random.key(0),
            sde,
            score,
            dataclasses.replace(timed, eval_times=(100.0,) + timed.eval_times[1:]),
            nfe=4,
            init=y,
        )


@pytest.mark.parametrize("solver", ["dpmpp_3m", "unipc"])
def test_full_history_corrections_keep_every_step_consistent(solver, x64):
    """Full-history corrections ``Δ_ij = s_i δ_ij`` (j ≥ 1), ``Δ_i0 = −Σ_j Δ_ij`` leave each step exact for a constant
    data prediction: on a point mass at μ (x̂0 ≡ μ) the corrected solver with large random δ still lands on the
    exact PF-ODE solution ``μ + (σ_min/σ_max)(x_T − μ)`` (EDM); zero δ, widened to the whole history, is the base
    solver bit for bit."""
    from diffjax.solvers.learn import history_correction

    sde = dj.EDM()
    mu = jnp.array([0.7, -1.3])
    score = lambda x, t: -(x - mu) / jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1)) ** 2
    base = dj.solvers.get(solver)
    ts = base.build_grid(sde, 6, base.grid_kind(sde))
    tables = base.coefficients(sde, ts, 6)
    delta = np.asarray(jax.random.normal(jax.random.key(3), (6, 6)), np.float64)
    corr = history_correction(tables, delta, 1.0)["pred"]
    assert corr.shape == (6, 6)
    np.testing.assert_allclose(corr.sum(axis=1), 0.0, atol=1e-12)
    assert np.all(corr[np.triu_indices(6, 1)] == 0) and np.any(corr[np.tril_indices(6, -1)] != 0)
    spec = dj.solvers.learned.diffusion_spec(sde)
    make = lambda c: dj.solvers.Learned(base=base, times=tuple(ts), corrections=c, diffusion=spec, nfe_budget=6)
    y = sde.prior_sample(jax.random.key(1), (16, 2))
    run = lambda s: np.asarray(dj.sample(jax.random.key(0), sde, score, s, nfe=6, init=y, kind="score"))
    exact = np.asarray(mu + sde.sigma(ts[-1]) / sde.sigma(ts[0]) * (y - mu))
    np.testing.assert_allclose(run(make((("pred", corr.tolist()),))), exact, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(run(make((("pred", np.zeros((6, 6)).tolist()),))), run(base))
    with pytest.raises(ValueError, match="or up to 6 history columns"):
        run(make((("pred", np.zeros((6, 7)).tolist()),)))


def test_learned_full_history_improves_on_the_base_weights_and_round_trips(tmp_path):
    """``what="grid+history"`` fits a correction on every earlier prediction (iPNDM, NFE 5 on the ring: more columns
    than the solver's own four); it beats the grid alone on the held-out draws, is stored and reloaded exactly, and
    a solver without a history is refused by name."""
    sde, score, full, _, _ = _fit_beats_the_grid_and_round_trips(tmp_path, 5, "grid+history")
    ((name, corr),) = full.corrections
    assert name == "pred" and np.shape(corr) == (5, 5), np.shape(corr)
    with pytest.raises(ValueError, match="keeps no history"):
        dj.solvers.learn(jax.random.key(0), sde, score, "ddim", 5, (2,), what="grid+history")


def _fit_beats_the_grid_and_round_trips(tmp_path, nfe, what):
    """Fit iPNDM on the ring (EDM) with ``what="grid"`` and with ``what`` from the same draws; assert that the second
    is better on the held-out draws and survives save/load bit for bit. Returns (sde, score, fitted, y, samples)."""
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    opts = dict(num_fit=128, num_heldout=128, steps=100, progress=False, teacher=("unipc", 60))
    grid = dj.solvers.learn(jax.random.key(0), sde, score, "ipndm", nfe, (2,), what="grid", **opts)
    fitted = dj.solvers.learn(jax.random.key(0), sde, score, "ipndm", nfe, (2,), what=what, **opts)
    assert not grid.eval_times and not grid.corrections
    assert fitted.info["heldout_rmse"] < grid.info["heldout_rmse"] < grid.info["heldout_rmse_base"], (
        fitted.info,
        grid.info,
    )
    loaded = dj.solvers.load(fitted.save(str(tmp_path / "fitted.json")))
    assert loaded == fitted
    y = sde.prior_sample(jax.random.key(9), (32, 2))
    a = dj.sample(jax.random.key(0), sde, score, fitted, nfe=nfe, init=y)
    np.testing.assert_array_equal(
        np.asarray(a), np.asarray(dj.sample(jax.random.key(0), sde, score, loaded, nfe=nfe, init=y))
    )
    return sde, score, fitted, y, a
