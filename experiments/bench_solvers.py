"""Solver accuracy vs NFE on the exact-score test bed.

For the 2-D ring and the 64-d digits mixture under VP and EDM, every deterministic solver (with each grid it
supports) runs at NFE ∈ {4, 5, 6, 8, 10, 12, 15, 20, 30, 50} in float32 from the same prior noise as a float64
adaptive diffrax reference (Dopri8, rtol = atol = 1e-10). Reported: pathwise RMSE of the endpoint at t_min, and
the Fréchet distance of the samples to the exact moments of p_{t_min} (with the noise floor of exact samples of
the same size). Stochastic solvers get the distribution metrics only. All endpoints are at t_min (no denoising
step), so every solver is compared on the same target.

    python experiments/bench_solvers.py [--quick] [--out experiments/results]

Writes bench_solvers.json, bench_solvers.md and bench_solvers.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from benchutil import prior_and_reference

import diffjax as dj
from diffjax.solvers import EDMHeun, SciRE, SciREMultistep, UniPC

NFES = [4, 5, 6, 8, 10, 12, 15, 20, 30, 50]
# (label, solver, grid): grid None = the solver's default for that diffusion
DETERMINISTIC = [
    ("ode_euler", "ode_euler", None),
    ("ode_heun", "ode_heun", None),
    ("edm_heun/karras", "edm_heun", "karras"),
    ("heun/logsnr", "edm_heun", "logsnr"),
    ("heun_edm(no final Euler)/karras", EDMHeun(final_euler=False), "karras"),
    ("ddim/logsnr", "ddim", "logsnr"),
    ("dpmpp_2m/logsnr", "dpmpp_2m", "logsnr"),
    ("dpmpp_2m/karras", "dpmpp_2m", "karras"),
    ("dpmpp_3m/logsnr", "dpmpp_3m", "logsnr"),
    ("dpmpp_3m/karras", "dpmpp_3m", "karras"),
    ("dpmpp_3m_ref/logsnr", "dpmpp_3m_ref", "logsnr"),
    ("unipc/logsnr", "unipc", "logsnr"),
    ("unipc/karras", "unipc", "karras"),
    ("unipc_2/logsnr", "unipc_2", "logsnr"),
    ("unipc_bh1/logsnr", UniPC(predictor_order=3, variant="bh1"), "logsnr"),
    ("scire v1-2 agile φ=2/3/nsr", SciRE(), "nsr"),
    ("scire v2-2 agile φ=2/3/nsr", SciRE(version="v2"), "nsr"),
    ("scire v1-3 agile φ=2/3/nsr", SciRE(stages=3), "nsr"),
    ("scire v1-2 agile φ=1/nsr", SciRE(phi="one"), "nsr"),
    ("scire v1-3 agile φ=1 taylor/nsr", SciRE(stages=3, phi="one", intermediate="taylor"), "nsr"),
    ("scire v1-2 sched2024/nsr", SciRE(phi="schedule_2024"), "nsr"),
    ("scire 2M φ=2/3/nsr", SciREMultistep(), "nsr"),
    ("scire 2M φ=1/logsnr", SciREMultistep(phi="one"), "logsnr"),
]
STOCHASTIC = [
    ("euler_maruyama", "euler_maruyama", None),
    ("ddpm", "ddpm", None),
    ("edm_heun_sde", "edm_heun_sde", "karras"),
]


def _problems(quick: bool):
    n_ring, n_dig = (256, 128) if quick else (2000, 1000)
    return [
        ("ring", dj.testbed.ring(), dj.VP(), n_ring),
        ("ring", dj.testbed.ring(), dj.EDM(), n_ring),
        ("digits", dj.testbed.digits(), dj.VP(), n_dig),
        ("digits", dj.testbed.digits(), dj.EDM(), n_dig),
    ]


def run(quick: bool, out: str, include: list[str] | None = None, name: str = "bench_solvers"):
    nfes = [4, 10, 20] if quick else NFES
    keep = lambda label: include is None or any(label.startswith(p) for p in include)
    deterministic = [e for e in DETERMINISTIC if keep(e[0])]
    stochastic_list = [e for e in STOCHASTIC if keep(e[0])]
    results = []
    for data_name, data, sde, n in _problems(quick):
        score = data.score_fn(sde)
        key = jax.random.key(0)
        t0 = time.perf_counter()
        y_T, ref = prior_and_reference(sde, data, n, key)
        mean, cov = data.marginal_moments(sde, sde.t_min)
        exact, _ = sde.perturb(jax.random.fold_in(key, 2), data.sample(jax.random.fold_in(key, 3), n), sde.t_min)
        floor = dj.metrics.frechet_distance(exact, mean, cov)
        print(
            f"[{data_name}/{sde.name}] reference in {time.perf_counter() - t0:.1f}s, Fréchet floor {floor:.2e}",
            flush=True,
        )
        for label, solver, grid in deterministic + stochastic_list:
            stochastic = (label, solver, grid) in STOCHASTIC
            for nfe in nfes:
                try:
                    x = dj.sample(key, sde, score, solver=solver, nfe=nfe, init=y_T, grid=grid, check_finite=False)
                except ValueError as e:  # e.g. a budget the solver cannot spend exactly
                    print(f"  skip {label} nfe={nfe}: {e}")
                    continue
                x = np.asarray(x, np.float64)
                rec = {
                    "data": data_name,
                    "sde": sde.name,
                    "solver": label,
                    "nfe": nfe,
                    "stochastic": stochastic,
                    "rmse": None if stochastic else float(np.sqrt(np.mean((x - ref) ** 2))),
                    "frechet": dj.metrics.frechet_distance(x, mean, cov) if np.all(np.isfinite(x)) else float("inf"),
                    "frechet_floor": floor,
                }
                results.append(rec)
            last = [r for r in results if r["solver"] == label and r["data"] == data_name and r["sde"] == sde.name]
            print(
                f"  {label:34s} "
                + " ".join(f"{(r['rmse'] if r['rmse'] is not None else r['frechet']):.1e}" for r in last),
                flush=True,
            )
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as fh:
        json.dump({"nfes": nfes, "results": results}, fh, indent=1)
    write_table(results, nfes, out, name)
    plot(results, out, name)


def _best(results, data, sde, nfe, key="rmse"):
    rows = [r for r in results if r["data"] == data and r["sde"] == sde and r["nfe"] == nfe and r[key] is not None]
    return min(rows, key=lambda r: r[key]) if rows else None


def write_table(results, nfes, out, name="bench_solvers"):
    lines = [
        "# Solver benchmark (exact-score test bed)",
        "",
        "Pathwise RMSE at t_min against a float64 Dopri8 reference (rtol = atol = 1e-10) from the same prior noise;",
        "solvers in float32; no denoising step. Lower is better. `solver/grid` names the time grid.",
        "",
    ]
    for data in ["ring", "digits"]:
        for sde in ["VP", "EDM"]:
            labels = []
            for r in results:
                if r["data"] == data and r["sde"] == sde and not r["stochastic"] and r["solver"] not in labels:
                    labels.append(r["solver"])
            if not labels:
                continue
            lines += [
                f"## {data} / {sde}: pathwise RMSE",
                "",
                "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                "|---|" + "---|" * len(nfes),
            ]
            for lab in labels:
                cells = []
                for n in nfes:
                    rr = [
                        r
                        for r in results
                        if r["data"] == data and r["sde"] == sde and r["solver"] == lab and r["nfe"] == n
                    ]
                    best = _best(results, data, sde, n)
                    if not rr:
                        cells.append("—")
                    else:
                        v = f"{rr[0]['rmse']:.2e}"
                        cells.append(f"**{v}**" if best and best["solver"] == lab else v)
                lines.append(f"| {lab} | " + " | ".join(cells) + " |")
            lines += [
                "",
                f"Fréchet distance to the exact p_tmin moments (floor of exact samples: "
                f"{next(r['frechet_floor'] for r in results if r['data'] == data and r['sde'] == sde):.2e}):",
                "",
                "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                "|---|" + "---|" * len(nfes),
            ]
            labs = labels + list(dict.fromkeys(r["solver"] for r in results if r["stochastic"]))
            for lab in labs:
                cells = []
                for n in nfes:
                    rr = [
                        r
                        for r in results
                        if r["data"] == data and r["sde"] == sde and r["solver"] == lab and r["nfe"] == n
                    ]
                    cells.append(f"{rr[0]['frechet']:.2e}" if rr else "—")
                lines.append(f"| {lab} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += [
        "## Best deterministic solver per NFE (pathwise RMSE)",
        "",
        "| problem | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---|" + "---|" * len(nfes),
    ]
    for data in ["ring", "digits"]:
        for sde in ["VP", "EDM"]:
            cells = []
            for n in nfes:
                b = _best(results, data, sde, n)
                cells.append(f"{b['solver']} {b['rmse']:.1e}" if b else "—")
            lines.append(f"| {data}/{sde} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, f"{name}.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def plot(results, out, name="bench_solvers"):
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    for ax, (data, sde) in zip(axes.ravel(), [("ring", "VP"), ("ring", "EDM"), ("digits", "VP"), ("digits", "EDM")]):
        labels = []
        for r in results:
            if r["data"] == data and r["sde"] == sde and not r["stochastic"] and r["solver"] not in labels:
                labels.append(r["solver"])
        for lab in labels:
            rr = [r for r in results if r["data"] == data and r["sde"] == sde and r["solver"] == lab]
            ax.loglog([r["nfe"] for r in rr], [r["rmse"] for r in rr], "o-", ms=3, label=lab)
        ax.set_title(f"{data} / {sde}")
        ax.set_xlabel("NFE")
        ax.set_ylabel("pathwise RMSE at t_min")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{name}.png"), dpi=100)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="solver accuracy vs NFE on the exact-score test bed")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--include", nargs="*", help="run only solvers whose label starts with one of these")
    p.add_argument("--name", default="bench_solvers", help="output file stem")
    a = p.parse_args()
    run(a.quick, a.out, a.include, a.name)
