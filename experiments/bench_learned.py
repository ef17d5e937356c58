"""Learned and optimized discretizations vs untuned solvers on the exact-score test bed.

Problems: the 2-D ring, the 64-d digits mixture and the 256-d spectral mixture (16×16 images with a power-law
spectrum, covariance condition number ≈ 4e4, in DCT coordinates) under EDM and VP. Base solvers: UniPC,
DPM-Solver++ 2M/3M, iPNDM, DDIM, EDM Heun, each

* untuned: its default grid;
* optimized: the training-free dynamic-programming grid (``dj.solvers.optimized_grid``);
* learned grid: ``dj.solvers.learn(..., what="grid")``;
* learned grid + coefficients: ``dj.solvers.learn(..., what="grid+coefs")`` (the defaults until 2026-12-07);
* learned with today's defaults: ``what="grid+coefs+history"``, plus ``"+times"`` at NFE ≤ 5 (full-history
  corrections of the multistep weights, decoupled evaluation times).

Evaluation draws (1000; 2000 for the ring) come from a key used neither for fitting nor for the held-out
selection inside ``learn``; their float64 Dopri8 solutions (rtol = atol = 1e-10) are the reference. Reported:
pathwise RMSE at t_min, the median per-path RMS error, the fraction of paths whose most likely mixture
component differs from the reference's ("mode flips"), and the fitting time (2 CPU cores).

    python experiments/bench_learned.py [--quick | --low-nfe] [--variants untuned,...] [--solvers ipndm,...]
        [--nfes 5,10] [--out experiments/results]

Rows are appended to bench_learned.jsonl as they finish; a rerun skips finished rows (delete the file to start
over). Then bench_learned.{json,md,png} are written from all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from benchutil import prior_and_reference

import diffjax as dj

SOLVERS = ["unipc", "dpmpp_2m", "dpmpp_3m", "ipndm", "ddim", "edm_heun"]
NFES = [3, 4, 5, 6, 8, 10, 20]
VARIANTS = [
    "untuned",
    "optimized",
    "learned grid",
    "learned grid+coefs",
    "learned grid+coefs+times",
    "learned grid+coefs+history",
    "learned grid+coefs+history+times",
]


def problems():
    return {
        "ring": (dj.testbed.ring(), 2000),
        "digits": (dj.testbed.digits(), 1000),
        "spectral": (dj.testbed.spectral(), 1000),
    }


def plan_low_nfe():
    """NFE 3 and 4 on digits / EDM: every untuned solver, then iPNDM and UniPC learned with and without the
    decoupled evaluation times and the full-history corrections; iPNDM the same at NFE 5 and 10; then NFE 3-4 on
    the other problems and under VP with today's defaults."""
    rows = [("EDM", "digits", solver, n, "untuned") for solver in SOLVERS for n in (3, 4)]
    for solver in ("ipndm", "unipc"):
        for n in (3, 4):
            rows += [("EDM", "digits", solver, n, v) for v in ("learned grid+coefs", "learned grid+coefs+times")]
    for n in (5, 10):  # the evaluation times at the budgets of the main table, with today's defaults
        rows += [("EDM", "digits", "ipndm", n, "untuned")]
        rows += [("EDM", "digits", "ipndm", n, v) for v in ("learned grid+coefs", "learned grid+coefs+times")]
    # full-history corrections (the default for multistep solvers since they were measured here)
    for solver, n in (("ipndm", 3), ("unipc", 3), ("ipndm", 4), ("unipc", 4), ("ipndm", 5)):
        rows += [("EDM", "digits", solver, n, "learned grid+coefs+history+times")]
    rows += [("EDM", "digits", "ipndm", 10, "learned grid+coefs+history")]
    # breadth at NFE 3-4 with today's defaults: the other problems and VP (iPNDM and UniPC)
    for s, p in [("EDM", "spectral"), ("VP", "digits"), ("EDM", "ring"), ("VP", "ring"), ("VP", "spectral")]:
        rows += [(s, p, solver, n, "untuned") for solver in SOLVERS for n in (3, 4)]
        rows += [(s, p, solver, n, "learned grid+coefs+history+times") for solver in ("ipndm", "unipc") for n in (3, 4)]
    return rows


def plan(quick: bool):
    """(sde name, problem, solver, nfe, variant) rows: untuned first, then the issue's targets, then breadth."""
    sdes, probs, nfes = (["EDM"], ["ring", "digits"], [5, 10]) if quick else (["EDM", "VP"], list(problems()), NFES)
    grid = [(s, p, solver, n) for s in sdes for p in probs for solver in SOLVERS for n in nfes]
    rows = [g + ("untuned",) for g in grid]
    rows += [g + ("optimized",) for g in grid if g[0] == "EDM" and g[1] in ("digits", "spectral")]
    learn_nfes = [5, 10] if quick else [5, 10, 20]
    for s, p in [("EDM", p) for p in (["digits"] if quick else ["digits", "spectral"])]:
        for solver in ["ipndm", "unipc", "dpmpp_3m"]:  # the targets: every learned variant of the strongest bases
            for n in learn_nfes:
                rows += [(s, p, solver, n, "learned grid+coefs"), (s, p, solver, n, "learned grid")]
    # the strongest variant first on every target problem (a run cut short still has the headline)
    first = [r for r in rows if r[4] == "learned grid+coefs" and r[2] in ("ipndm", "unipc")]
    head = len(grid) + sum(
        1 for g in grid if g[0] == "EDM" and g[1] in ("digits", "spectral")
    )  # untuned + target optimized
    # learn's defaults since the full-history corrections (+ evaluation times at NFE <= 5): the targets first
    today = [
        ("EDM", p, solver, n, "learned grid+coefs+history" + ("+times" if n <= 5 else ""))
        for ns in ([5, 10], [20])
        for solver in ["ipndm", "unipc", "dpmpp_3m"]
        for p in (["digits"] if quick else ["digits", "spectral"])
        for n in ns
        if n in learn_nfes
    ]
    rows = rows[:head] + first + today + [r for r in rows[head:] if r not in first]
    rows += [g + ("optimized",) for g in grid if g + ("optimized",) not in rows]
    if not quick:
        for solver in ["dpmpp_2m", "ddim", "edm_heun"]:  # the other bases, at low NFE
            for n in [5, 10]:
                rows += [
                    ("EDM", "digits", solver, n, "learned grid+coefs"),
                    ("EDM", "digits", solver, n, "learned grid"),
                ]
        for s, p in [("EDM", "ring"), ("VP", "digits"), ("VP", "spectral"), ("VP", "ring")]:  # breadth: iPNDM only
            for n in NFES if p == "ring" else learn_nfes:
                rows.append((s, p, "ipndm", n, "learned grid+coefs"))
        for n in [3, 4, 6, 8]:
            rows.append(("EDM", "digits", "ipndm", n, "learned grid+coefs"))
    return rows


def metrics(data, sde, x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    per_path = np.sqrt(np.mean((x - ref).reshape(len(x), -1) ** 2, axis=1))
    comp = lambda y: np.asarray(jnp.argmax(data._per_component(sde, jnp.asarray(y, jnp.float32), sde.t_min)[0], axis=1))
    return {
        "rmse": float(np.sqrt(np.mean((x - ref) ** 2))),
        "median": float(np.median(per_path)),
        "flips": float(np.mean(comp(x) != comp(ref))),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--low-nfe", action="store_true", help="NFE 3-4 rows only (results/bench_learned_low_nfe.*)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument(
        "--variants", default=None, help="comma-separated variants to run (default: all; the report uses every row)"
    )
    ap.add_argument("--solvers", default=None, help="comma-separated base solvers to run (default: all)")
    ap.add_argument("--nfes", default=None, help="comma-separated NFEs to run (default: all)")
    args = ap.parse_args()
    only = None if args.variants is None else set(args.variants.split(","))
    if only is not None and not only <= set(VARIANTS):
        raise SystemExit(f"--variants: unknown {sorted(only - set(VARIANTS))}; known: {VARIANTS}")
    solvers = None if args.solvers is None else set(args.solvers.split(","))
    if solvers is not None and not solvers <= set(SOLVERS):
        raise SystemExit(f"--solvers: unknown {sorted(solvers - set(SOLVERS))}; known: {SOLVERS}")
    nfes = None if args.nfes is None else {int(n) for n in args.nfes.split(",")}
    os.makedirs(args.out, exist_ok=True)
    name = "bench_learned_low_nfe" if args.low_nfe else "bench_learned_quick" if args.quick else "bench_learned"
    log = os.path.join(args.out, f"{name}.jsonl")
    done = {}
    if os.path.exists(log):
        for line in open(log):
            if line.strip():
                r = json.loads(line)
                done[(r["sde"], r["problem"], r["solver"], r["nfe"], r["variant"])] = r
    sdes = {"EDM": dj.EDM(), "VP": dj.VP()}
    probs = problems()
    cache = {}
    for row in plan_low_nfe() if args.low_nfe else plan(args.quick):
        wanted = all(f is None or v in f for f, v in ((only, row[4]), (solvers, row[2]), (nfes, row[3])))
        if row in done or not wanted:
            continue
        s, p, solver, nfe, variant = row
        sde, (data, n) = sdes[s], probs[p]
        if args.quick:
            n = min(n, 256)
        if (s, p) not in cache:
            cache[(s, p)] = prior_and_reference(sde, data, n, jax.random.key(0))
        y, ref = cache[(s, p)]
        score = data.score_fn(sde)
        t0 = time.perf_counter()
        extra = {}
        if variant == "untuned":
            chosen = solver
        elif variant == "optimized":
            chosen = dj.solvers.optimized_grid(jax.random.key(7), sde, score, solver, nfe, data.data_shape)
            extra["chosen"] = chosen.info["chosen"]
        else:
            what = variant.removeprefix("learned ")
            opts = dict(num_fit=128, num_heldout=128, steps=100) if args.quick else {}
            chosen = dj.solvers.learn(
                jax.random.key(1), sde, score, solver, nfe, data.data_shape, what=what, progress=False, **opts
            )
            extra = {
                k: chosen.info.get(k)
                for k in (
                    "steps_run",
                    "heldout_rmse",
                    "heldout_rmse_base",
                    "fallback",
                    "teacher_seconds",
                    "teacher",
                    "history_scale",
                )
            }
        fit_s = time.perf_counter() - t0
        x = dj.sample(jax.random.key(0), sde, score, chosen, nfe=nfe, init=y)
        r = {
            "sde": s,
            "problem": p,
            "solver": solver,
            "nfe": nfe,
            "variant": variant,
            "fit_seconds": fit_s,
            **metrics(data, sde, x, ref),
            **extra,
        }
        if variant != "untuned":
            r["grid"] = list(chosen.times)
        print(json.dumps({k: v for k, v in r.items() if k != "grid"}), flush=True)
        with open(log, "a") as fh:
            fh.write(json.dumps(r) + "\n")
        done[row] = r
    report(list(done.values()), args.out, name)


def report(rows, out, name):
    with open(os.path.join(out, f"{name}.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    get = {(r["sde"], r["problem"], r["solver"], r["nfe"], r["variant"]): r for r in rows}
    lines = [
        f"# {name}",
        "",
        "Pathwise RMSE at t_min on evaluation draws never used for fitting (float64 Dopri8 "
        "reference). Cells: untuned / optimized grid / learned grid / learned grid + coefficients / the same + "
        "decoupled evaluation times / grid + coefficients + full-history corrections / the same + evaluation times "
        "(— not run). Generated by experiments/bench_learned.py.",
        "",
    ]
    fmt = lambda r: "—" if r is None else f"{r['rmse']:.2e}"
    for s, p in sorted({(r["sde"], r["problem"]) for r in rows}):
        nfes = sorted({r["nfe"] for r in rows if (r["sde"], r["problem"]) == (s, p)})
        lines += [
            f"## {p} / {s}",
            "",
            "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
            "|---|" + "---|" * len(nfes),
        ]
        for solver in SOLVERS:
            cells = [" / ".join(fmt(get.get((s, p, solver, n, v))) for v in VARIANTS) for n in nfes]
            lines.append(f"| {solver} | " + " | ".join(cells) + " |")
        best_lines = []
        for n in nfes:
            untuned = [get[(s, p, so, n, "untuned")]["rmse"] for so in SOLVERS if (s, p, so, n, "untuned") in get]
            learned = [
                (r["rmse"], r["solver"], r["variant"], r)
                for (ss, pp, so, nn, v), r in get.items()
                if (ss, pp, nn) == (s, p, n) and v.startswith("learned")
            ]
            if untuned and learned:
                b, so, v, r = min(learned, key=lambda t: t[0])
                best_lines.append(
                    f"| {n} | {min(untuned):.2e} | {b:.2e} ({so}, {v}) | **{b / min(untuned):.2f}×** | "
                    f"{r['median']:.2e} | {r['flips']:.3f} | {r['fit_seconds']:.0f} s |"
                )
        if best_lines:
            lines += [
                "",
                "| NFE | best untuned | best learned | ratio | its median path error | its mode flips | its fit time |",
                "|---|---|---|---|---|---|---|",
                *best_lines,
            ]
        lines.append("")
    with open(os.path.join(out, f"{name}.md"), "w") as fh:
        fh.write("\n".join(lines))
    pairs = sorted({(r["sde"], r["problem"]) for r in rows})
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (s, p) in zip(axes[0], pairs):
        for variant, style in zip(VARIANTS, ["-", "--", ":", "-.", (0, (1, 3)), (0, (5, 1)), (0, (3, 1, 1, 1))]):
            for solver, color in zip(SOLVERS, plt.cm.tab10.colors):
                pts = sorted(
                    (r["nfe"], r["rmse"])
                    for r in rows
                    if (r["sde"], r["problem"], r["solver"], r["variant"]) == (s, p, solver, variant)
                )
                if len(pts) > 1 or (pts and variant.startswith("learned")):
                    ax.plot(
                        *zip(*pts),
                        linestyle=style,
                        marker="o" if variant.startswith("learned") else None,
                        ms=3,
                        color=color,
                        label=f"{solver} {variant}" if (s, p) == pairs[0] else None,
                    )
        ax.set(xscale="log", yscale="log", title=f"{p} / {s}", xlabel="NFE")
    axes[0][0].set_ylabel("pathwise RMSE")
    fig.legend(loc="lower center", ncol=6, fontsize=6)
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    fig.savefig(os.path.join(out, f"{name}.png"), dpi=120)


if __name__ == "__main__":
    main()
