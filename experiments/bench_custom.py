"""What declaring a diffusion from F and G alone costs: ``dj.diffusions.custom`` vs the hand-written closed forms.

For VP and CLD on the 64-d digits mixture and blurring on the 8×8 DCT-diagonal digits mixture, re-declared from
their drift and diffusion coefficients (as in tests/test_custom.py), this measures

* the one-off build time (diffrax Dopri8 solve of the kernel ODEs on the grid, float64);
* the kernel accuracy: max relative error of Ψ(t, 0) and Σ_t over 200 log-spaced t in [t_min, T] (float64);
* sampling: wall time of one compiled ``dj.sample`` call (median of 5, float32, batch 1000, exact test-bed score,
  whose per-time kernels now come from the interpolation tables), the ratio custom / hand-written, the largest
  difference between their samples from the same prior draws, and both pathwise RMSEs against the float64
  Dopri8 reference of the hand-written process.

    python experiments/bench_custom.py [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchutil import prior_and_reference

import diffjax as dj


def problems():
    """(name, hand-written diffusion, data, custom builder, solvers at their NFE)."""
    vp, cld, blur = dj.VP(), dj.CLD(), dj.Blur((8, 8, 1))
    return [
        (
            "vp/digits64",
            vp,
            dj.testbed.digits(),
            lambda: dj.diffusions.custom(lambda t: -0.5 * vp.beta(t), lambda t: jnp.sqrt(vp.beta(t)), t_min=vp.t_min),
            [("dpmpp_2m", 10), ("edm_heun", 19), ("gddim_3", 20)],
        ),
        (
            "cld/digits64",
            cld,
            dj.testbed.digits(),
            lambda: dj.diffusions.custom(
                cld.drift_block, cld.diffusion_block, block_size=2, initial_cov=cld.initial_cov, t_min=cld.t_min
            ),
            [("gddim_3", 20), ("euler_maruyama", 100)],
        ),
        (
            "blur/digits8x8",
            blur,
            dj.testbed.digits_dct(),
            lambda: dj.diffusions.custom(
                lambda t: blur.drift_block(t)[..., 0, 0],
                lambda t: blur.diffusion_block(t)[..., 0, 0],
                basis="dct",
                initial_cov=float(blur.sigma(0.0)) ** 2,
                t_min=blur.t_min,
            ),
            [("gddim_3", 20), ("pc", 100)],
        ),
    ]


def kernel_errors(hand, cust) -> dict:
    with jax.enable_x64(True):
        ts = jnp.asarray(np.geomspace(hand.t_min, hand.T, 200))
        psi_h, psi_c = hand.transition_block(ts, 0 * ts), cust.transition_block(ts, 0 * ts)
        cov_h, cov_c = hand.cov_block(ts), cust.cov_block(ts)
        rel = lambda a, b: float(
            jnp.max(jnp.abs(a - b) / jnp.maximum(jnp.abs(b), 1e-300 + 1e-12 * jnp.max(jnp.abs(b))))
        )
        return {
            "psi_rel_err": rel(psi_c, jnp.broadcast_to(psi_h, psi_c.shape)),
            "cov_rel_err": rel(cov_c, jnp.broadcast_to(cov_h, cov_c.shape)),
        }


def timed(fn, reps: int = 5) -> float:
    """Median wall time of ``reps`` calls after a compiling one."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    rows = []
    for name, hand, data, build, solvers in problems():
        t0 = time.perf_counter()
        with jax.enable_x64(True):  # the builders read closed-form values (e.g. Blur's σ(0)²) in float64
            cust = build()
        build_s = time.perf_counter() - t0
        errs = kernel_errors(hand, cust)
        y0, ref = prior_and_reference(hand, data, args.batch, jax.random.key(0))
        ref_x = ref.reshape(args.batch, -1)  # the data part (x)
        for solver, nfe in solvers:
            res = {}
            for label, sde in (("hand", hand), ("custom", cust)):
                score = data.score_fn(sde)
                fn = jax.jit(
                    lambda y, sde=sde, score=score: dj.sample(jax.random.key(1), sde, score, solver, nfe=nfe, init=y)
                )
                sec = timed(lambda: fn(y0))
                x = np.asarray(fn(y0)).reshape(args.batch, -1)  # sample returns the data part
                res[label] = (sec, x)
            rmse = lambda x: float(np.sqrt(np.mean(np.sum((x - ref_x) ** 2, axis=1)) / ref_x.shape[1]))
            row = {
                "problem": name,
                "solver": solver,
                "nfe": nfe,
                "build_s": build_s,
                **errs,
                "time_hand_s": res["hand"][0],
                "time_custom_s": res["custom"][0],
                "time_ratio": res["custom"][0] / res["hand"][0],
                "max_sample_diff": float(np.max(np.abs(res["custom"][1] - res["hand"][1]))),
                "rmse_hand": rmse(res["hand"][1]),
                "rmse_custom": rmse(res["custom"][1]),
            }
            rows.append(row)
            print(json.dumps(row))
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "batch": args.batch,
        "note": "float32 sampling; kernels compared in float64; times are medians of 5 compiled calls",
    }
    with open(os.path.join(args.out, "bench_custom.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = [
        "| problem | solver, NFE | build (s) | Ψ rel. err | Σ rel. err | time custom / hand | max |Δx| | "
        "RMSE hand / custom |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['solver']}, {r['nfe']} | {r['build_s']:.1f} | {r['psi_rel_err']:.1e} | "
            f"{r['cov_rel_err']:.1e} | {r['time_custom_s'] * 1e3:.1f} / {r['time_hand_s'] * 1e3:.1f} ms "
            f"({r['time_ratio']:.2f}×) | {r['max_sample_diff']:.1e} | {r['rmse_hand']:.2e} / "
            f"{r['rmse_custom']:.2e} |"
        )
    with open(os.path.join(args.out, "bench_custom.md"), "w") as f:
        f.write(
            f"# custom(F, G) vs hand-written diffusions ({meta['device']}, jax {meta['jax']}, batch "
            f"{args.batch})\n\n" + "\n".join(lines) + "\n"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
