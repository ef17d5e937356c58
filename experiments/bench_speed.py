"""Sampling speed: how close each solver gets to the NFE × forward-pass limit, on GPU and CPU.

GPU (``--gpu``): EDM's DDPM++ CIFAR-10 network (55.7 M parameters, random weights — speed does not depend on
them) under EDM preconditioning. For each setting: median wall time of one jit-compiled ``dj.sample`` call
(after warm-up, ``block_until_ready``), images/s, the forward-only time × NFE and the overhead factor
(sample time / (NFE × forward)), the forward's TFLOP/s (FLOPs from XLA's cost analysis), compile time and peak
memory; plus sampling through ``diffrax.diffeqsolve`` (Heun, ``StepTo`` on the same grid) for comparison.
float32 runs use XLA's default matmul precision on GPU (TF32 tensor cores); bf16 runs keep float32 parameters
and cast activations to bfloat16 inside the network.

CPU (``--cpu``): the exact 64-d digits mixture score (batch 2000) and a small MLP: ``dj.sample`` vs
``diffrax.diffeqsolve`` vs a Python loop over a jitted step — where solver overhead matters.

    python experiments/bench_speed.py --gpu [--quick]     # on the GPU machine
    python experiments/bench_speed.py --cpu               # anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

import diffjax as dj

PYTORCH_REF = {"fp32_tf32_b1024": 81.0, "fp16_b1024": 123.0, "compile_b256": 127.0}  # images/s, EDM Heun NFE 35, H100


def timeit(fn, *args, reps=5):
    jax.block_until_ready(fn(*args))  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def compile_time(fn, *args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t


def peak_mem():
    try:
        return jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0) / 2**30
    except Exception:
        return float("nan")


def diffrax_heun(sde, model, grid, y0):
    import diffrax

    term = dj.interop.pf_ode_term(sde, model)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Heun(),
        t0=grid[0],
        t1=grid[-1],
        dt0=None,
        y0=y0,
        stepsize_controller=diffrax.StepTo(ts=jnp.asarray(grid)),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=len(grid),
    )
    return sol.ys[0]


def _emit(a, row):
    """Print a row and append it to a JSON-lines file at once (a run cut short keeps what it measured)."""
    print(json.dumps(row), flush=True)
    with open(os.path.join(a.out, "bench_speed_gpu_rows.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def gpu(a):
    from flax import nnx

    rows = []
    sde = dj.EDM()
    batches = [8] if a.tiny else [64, 256] if a.quick else [64, 256, 1024]
    for dtype_name in a.dtypes:
        dtype = jnp.bfloat16 if dtype_name == "bf16" else jnp.float32
        if a.tiny:  # smoke test of this code path on a CPU
            from flax import nnx as _n

            net = dj.models.UNet((32, 32, 3), 16, (1, 2), 1, (16,), dtype=dtype, rngs=_n.Rngs(0))
        else:
            net = dj.models.ddpmpp_cifar10(dropout=0.0, dtype=dtype)
        graphdef, state = nnx.split(net)

        def model_of(state):
            return dj.models.precondition(sde, nnx.merge(graphdef, state))

        for batch in batches:
            x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 3))
            sig = jnp.full((batch,), 2.0)
            fwd = lambda st, x, s: model_of(st).x0(x, s)
            c_fwd, ct_fwd = compile_time(fwd, state, x, sig)
            cost = c_fwd.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            flops = float(cost.get("flops", float("nan")))
            t_fwd = timeit(c_fwd, state, x, sig)
            solvers = [("edm_heun", 35)] + (
                []
                if batch != (8 if a.tiny else 256)
                else [
                    ("edm_heun", 10),
                    ("edm_heun", 20),
                    ("edm_heun", 50),
                    ("dpmpp_2m", 35),
                    ("ddim", 35),
                    ("euler_maruyama", 35),
                    ("unipc", 35),
                ]
            )
            if a.quick:
                solvers = solvers[:3]
            for solver, nfe in solvers:
                fn = lambda st, k: dj.sample(k, sde, model_of(st), solver, nfe=nfe, shape=(batch, 32, 32, 3))
                compiled, ct = compile_time(fn, state, jax.random.key(1))
                t = timeit(compiled, state, jax.random.key(2), reps=3)
                row = {
                    "dtype": dtype_name,
                    "batch": batch,
                    "solver": solver,
                    "nfe": nfe,
                    "sample_s": t,
                    "images_per_s": batch / t,
                    "forward_s": t_fwd,
                    "forward_x_nfe_s": t_fwd * nfe,
                    "overhead": t / (t_fwd * nfe),
                    "forward_tflops": flops / t_fwd / 1e12,
                    "gflops_per_image": flops / batch / 1e9,
                    "compile_s": ct,
                    "forward_compile_s": ct_fwd,
                    "peak_gib": peak_mem(),
                }
                rows.append(row)
                _emit(a, row)
            if batch == (8 if a.tiny else 256) and not a.quick:
                grid = dj.solvers.EDMHeun().build_grid(sde, 35, "karras")
                fn = lambda st, y: diffrax_heun(sde, model_of(st), grid, y)
                y0 = 80.0 * x
                compiled, ct = compile_time(fn, state, y0)
                t = timeit(compiled, state, y0, reps=3)
                nfe = 2 * (len(grid) - 1)
                row = {
                    "dtype": dtype_name,
                    "batch": batch,
                    "solver": "diffrax_heun_stepto",
                    "nfe": nfe,
                    "sample_s": t,
                    "images_per_s": batch / t,
                    "forward_s": t_fwd,
                    "forward_x_nfe_s": t_fwd * nfe,
                    "overhead": t / (t_fwd * nfe),
                    "compile_s": ct,
                    "peak_gib": peak_mem(),
                }
                rows.append(row)
                _emit(a, row)
    return rows


def cpu(a):
    from flax import nnx

    rows = []
    data = dj.testbed.digits()
    sde = dj.VP()
    exact = data.score_fn(sde)
    mlp = dj.models.MLP((64,), 256, 3, rngs=nnx.Rngs(0))
    mlp_model = dj.models.precondition(sde, mlp)
    for name, model in [("exact digits score", dj.prediction.as_model(sde, exact)), ("MLP 256x3", mlp_model)]:
        batch = 2000
        y = jax.random.normal(jax.random.key(0), (batch, 64))
        t_mid = jnp.full((batch,), 0.5)
        fwd = jax.jit(lambda y, t: model.eps(y, t))
        t_fwd = timeit(fwd, y, t_mid)
        for solver, nfe in [("ode_euler", 20), ("edm_heun", 19), ("dpmpp_2m", 20), ("unipc", 20), ("ddim", 20)]:
            fn = jax.jit(lambda k, y: dj.sample(k, sde, model, solver, nfe=nfe, init=y))
            t = timeit(fn, jax.random.key(1), y)
            rows.append(
                {"model": name, "method": f"dj.sample {solver}", "nfe": nfe, "s": t, "overhead": t / (t_fwd * nfe)}
            )
        import diffrax

        grid = dj.solvers.make_grid(sde, 20, "quadratic")
        term = dj.interop.pf_ode_term(sde, model)
        dfx = jax.jit(
            lambda y: diffrax.diffeqsolve(
                term,
                diffrax.Euler(),
                grid[0],
                grid[-1],
                None,
                y,
                stepsize_controller=diffrax.StepTo(ts=jnp.asarray(grid)),
                max_steps=21,
            ).ys[0]
        )
        t = timeit(dfx, y)
        rows.append({"model": name, "method": "diffrax Euler StepTo", "nfe": 20, "s": t, "overhead": t / (t_fwd * 20)})
        step = jax.jit(lambda y, t, dt: y + dt * sde.reverse_drift(y, t, model.score(y, t)))

        def loop(y):
            for i in range(20):
                y = step(y, grid[i], grid[i + 1] - grid[i])
            return y

        t = timeit(loop, y)
        rows.append(
            {
                "model": name,
                "method": "Python loop of jitted Euler steps",
                "nfe": 20,
                "s": t,
                "overhead": t / (t_fwd * 20),
            }
        )
        for r in rows[-7:]:
            print(json.dumps(r), flush=True)
    return rows


def flops_per_image(out_dir) -> float:
    """Forward FLOPs of the DDPM++ network per image from XLA's cost analysis on the CPU backend (the GPU's
    analysis leaves out cuDNN convolutions); cached in ``bench_speed_flops.json``."""
    path = os.path.join(out_dir, "bench_speed_flops.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)["flops_per_image"]
    from flax import nnx

    graphdef, state = nnx.split(dj.models.ddpmpp_cifar10(dropout=0.0))
    fwd = lambda st, x, c: nnx.merge(graphdef, st)(x, c)
    cpu = jax.devices("cpu")[0]
    args = jax.device_put((state, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))), cpu)
    cost = jax.jit(fwd).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"])
    with open(path, "w") as f:
        json.dump(
            {"flops_per_image": flops, "how": "XLA cost analysis, CPU backend, batch 1", "jax": jax.__version__}, f
        )
    return flops


def report(out_dir):
    """Markdown table + plot from the GPU result files (``bench_speed_gpu_*.json``)."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, dev = [], "?"
    for path in sorted(
        glob.glob(os.path.join(out_dir, "bench_speed_gpu_b*.json"))
        + glob.glob(os.path.join(out_dir, "bench_speed_gpu_f*.json"))
    ):
        with open(path) as f:
            d = json.load(f)
        dev = d["device"]
        rows += d["rows"]
    if not rows:
        return
    flops = flops_per_image(out_dir)
    lines = [
        f"# Sampling speed on {dev} (EDM DDPM++ CIFAR-10, 55.7 M parameters, {flops / 1e9:.1f} GFLOP/image)",
        "",
        "| dtype | batch | solver | NFE | images/s | sample s | NFE × forward s | overhead | forward TFLOP/s "
        "| compile s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tf = flops * r["batch"] / r["forward_s"] / 1e12
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['solver']} | {r['nfe']} | {r['images_per_s']:.1f} | "
            f"{r['sample_s']:.3f} | "
            f"{r['forward_x_nfe_s']:.3f} | {r['overhead']:.3f} | {tf:.0f} | {r.get('compile_s', float('nan')):.1f} | "
            f"{r.get('peak_gib', float('nan')):.2f} |"
        )
    with open(os.path.join(out_dir, "bench_speed_gpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for dtype in ("bf16", "fp32"):
        sel = [r for r in rows if r["dtype"] == dtype and r["solver"] == "edm_heun" and r["nfe"] == 35]
        ax.plot([r["batch"] for r in sel], [r["images_per_s"] for r in sel], "o-", label=f"diffjax {dtype}")
    for label, v in PYTORCH_REF.items():
        ax.axhline(v, ls="--", lw=0.8, color="gray")
        ax.text(64, v, f"PyTorch {label}", fontsize=7, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("images/s (Heun, NFE 35)")
    ax.set_title(dev)
    ax.legend()
    fig.savefig(os.path.join(out_dir, "bench_speed_gpu.png"), dpi=100, bbox_inches="tight")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tiny", action="store_true", help="a small UNet (CPU smoke test of the GPU code path)")
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--report", action="store_true", help="markdown table + plot from the GPU JSON files")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.report:
        report(a.out)
        return
    dev = jax.devices()[0].device_kind
    if a.gpu:
        rows = gpu(a)
        with open(
            os.path.join(a.out, "bench_speed_gpu" + ("_tiny" if a.tiny else "") + "_" + "_".join(a.dtypes) + ".json"),
            "w",
        ) as f:
            json.dump(
                {"device": dev, "jax": jax.__version__, "pytorch_reference_images_per_s": PYTORCH_REF, "rows": rows},
                f,
                indent=1,
            )
    if a.cpu:
        rows = cpu(a)
        with open(os.path.join(a.out, "bench_speed_cpu.json"), "w") as f:
            json.dump({"device": dev, "jax": jax.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
