"""SciRE-Solver against independent oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax import interop
from diffjax.solvers import SciRE, SciREMultistep
from diffjax.solvers.scire import agile_orders, phi_partial_sum

MIX = dj.testbed.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], [0.05, 0.2])


def test_phi_partial_sums():
    assert phi_partial_sum(3) == pytest.approx(2 / 3)
    assert phi_partial_sum(4) == pytest.approx(0.625)
    assert phi_partial_sum(30) == pytest.approx(1 - np.exp(-1))


def test_nsr_grid_endpoints_and_monotone(x64):
    for sde in (dj.VP(), dj.EDM()):
        for k in (0.0, 3.1, 7.0):
            g = dj.solvers.make_grid(sde, 10, "nsr", nsr_k=k)
            assert g[0] == sde.T and g[-1] == sde.t_min and np.all(np.diff(g) < 0)
    np.testing.assert_allclose(
        dj.solvers.make_grid(dj.VP(), 10, "nsr", nsr_k=0.0), dj.solvers.make_grid(dj.VP(), 10, "logsnr"), rtol=1e-10
    )


def test_scire1_is_ddim(x64):
    sde = dj.VP()
    score = dj.testbed.ring().score_fn(sde)
    y = sde.prior_sample(jax.random.key(0), (8, 2))
    g = dj.solvers.make_grid(sde, 6, "nsr")
    for version in ("v1", "v2"):
        a = dj.sample(jax.random.key(0), sde, score, SciRE(stages=1, version=version), grid=g, init=y)
        b = dj.sample(jax.random.key(0), sde, score, "ddim", grid=g, init=y)
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("sde", [dj.VP(), dj.EDM()], ids=["vp", "edm"])
@pytest.mark.parametrize(
    "solver",
    [
        SciRE(),
        SciRE(version="v2"),
        SciRE(stages=3),
        SciRE(stages=3, version="v2", phi="schedule_2024"),
        SciREMultistep(),
        SciREMultistep(history=3, version="v2"),
    ],
    ids=["v1-2", "v2-2", "v1-3", "v2-3-sched", "2M", "3M-v2"],
)
def test_dirac_data_exact_for_any_phi(sde, solver, x64):
    mu = jnp.array([0.4, -1.2])
    g = dj.testbed.GaussianMixture([1.0], mu[None], [0.0])
    y = sde.prior_sample(jax.random.key(0), (8, 2))
    x = dj.sample(jax.random.key(0), sde, g.score_fn(sde), solver, nfe=7, init=y)
    ts = solver.build_grid(sde, 7, "nsr")
    exact = sde.alpha(ts[-1]) * mu + sde.sigma(ts[-1]) / sde.sigma(ts[0]) * (y - sde.alpha(ts[0]) * mu)
    np.testing.assert_allclose(x, exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "solver,lo,hi",
    [
        (SciRE(stages=2, phi="one", allocation="fixed"), 1.8, 2.3),
        (SciRE(stages=2, phi="one", version="v2", allocation="fixed"), 1.8, 2.3),
        (SciRE(stages=3, phi="one", intermediate="taylor", allocation="fixed"), 2.7, 3.3),
        (SciRE(stages=3, phi="one", intermediate="code", allocation="fixed"), 1.6, 2.2),
        (SciRE(stages=2, allocation="fixed"), 0.6, 1.2),  # φ = 2/3 as published: first order
        (SciRE(stages=3, allocation="fixed"), 0.6, 1.2),
        (SciREMultistep(phi="one"), 1.8, 2.3),
    ],
    ids=["2-phi1", "2-phi1-v2", "3-taylor", "3-code", "2-phi23", "3-phi23", "2M-phi1"],
)
def test_measured_orders(solver, lo, hi, x64):
    sde = dj.VP(t_min=1e-2)
    score = MIX.score_fn(sde)
    y = sde.prior_sample(jax.random.key(5), (16, 2))
    ref = interop.reference_sample(sde, score, y, rtol=1e-12, atol=1e-12)
    ms = [32, 64, 128, 256]
    errs = [
        float(
            jnp.sqrt(
                jnp.mean(
                    (
                        dj.sample(
                            jax.random.key(0), sde, score, solver, init=y, grid=dj.solvers.make_grid(sde, m, "logsnr")
                        )
                        - ref
                    )
                    ** 2
                )
            )
        )
        for m in ms
    ]
    slope = -np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert lo < slope < hi, (slope, errs)


def test_nfe_accounting_and_allocation():
    assert agile_orders(12, 3) == [3, 3, 3, 2, 1] and sum(agile_orders(13, 3)) == 13 and sum(agile_orders(11, 2)) == 11
    sde = dj.VP()
    g = dj.testbed.ring()
    for solver, nfe in [
        (SciRE(stages=3), 10),
        (SciRE(), 7),
        (SciRE(stages=3, allocation="fixed"), 9),
        (SciREMultistep(), 5),
    ]:
        calls = []

        def score(y, t):
            jax.debug.callback(lambda: calls.append(1))
            return g.score(sde, y, t)

        jax.block_until_ready(dj.sample(jax.random.key(0), sde, score, solver=solver, nfe=nfe, shape=(2, 2)))
        assert len(calls) == nfe, (solver, len(calls))
    with pytest.raises(ValueError, match="divisible"):
        dj.sample(jax.random.key(0), sde, g.score_fn(sde), SciRE(stages=3, allocation="fixed"), nfe=10, shape=(2, 2))


def test_bad_parameters():
    with pytest.raises(ValueError, match="version"):
        SciRE(version="v3")
    with pytest.raises(ValueError, match="phi"):
        SciRE(phi=1.5)
    with pytest.raises(ValueError, match="intermediate"):
        SciRE(intermediate="exact")
    with pytest.raises(ValueError, match="scalar diffusion"):
        dj.sample(jax.random.key(0), dj.CLD(), dj.testbed.ring().score_fn(dj.CLD()), "scire", nfe=4, shape=(2, 2))
