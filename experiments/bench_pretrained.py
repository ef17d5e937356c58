"""diffusers vs diffjax on the same random-weight DDPM CIFAR-10 ``UNet2DModel``, side by side on this machine.

    python experiments/bench_pretrained.py torch OUT   # an environment with torch + diffusers: builds the model,
                                                      # saves it as a diffusers folder, times diffusers' sampler
    python experiments/bench_pretrained.py jax OUT     # diffjax's environment: loads the folder, times dj.sample,
                                                      # -> results/bench_pretrained.{json,md}

``make bench-pretrained`` runs both (creating .venv-pretrained for the first). The model has google/ddpm-cifar10-32's
architecture (35.7 M parameters) with random weights; both sample 16 images at NFE 10, diffusers with
``DPMSolverMultistepScheduler`` (DPM-Solver++ 2M, its defaults), diffjax with ``dpmpp_2m`` on the same network
loaded from the same files (its default log-SNR grid: same NFE and solver family, not the same time points). Each
is warmed up by one full run (diffjax's compiles there); the time is the median of ``--repeats`` runs. The ratio is
the claim (absolute CPU seconds depend on the machine). Also recorded: the max relative difference of one forward
pass on the same input.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=[128, 256, 256, 256],
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=2,
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
)
BATCH, NFE = 16, 10


def torch_step(out, repeats):
    import diffusers
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**CONFIG).eval()
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02
    )
    folder = os.path.join(out, "ddpm_cifar10_random")
    unet.save_pretrained(folder, safe_serialization=True)
    sched.save_pretrained(folder)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((BATCH, 3, 32, 32), generator=g)
        sched.set_timesteps(NFE)
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.step(unet(x, t).sample, t, x).prev_sample
        return x

    run(0)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        run(r + 1)
        times.append(time.perf_counter() - t0)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        f = unet(torch.tensor(x), torch.tensor([17, 640])).sample.numpy()
    np.savez(
        os.path.join(out, "torch.npz"),
        times=np.array(times),
        x=x.transpose(0, 2, 3, 1),
        forward=f.transpose(0, 2, 3, 1),
        steps=np.array([17, 640]),
    )
    with open(os.path.join(out, "torch.json"), "w") as fh:
        json.dump(
            {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "threads": torch.get_num_threads(),
                "timesteps": [int(t) for t in sched.timesteps],
            },
            fh,
        )
    print(f"diffusers: {np.median(times):.2f} s per batch of {BATCH} (median of {repeats})")


def jax_step(out, repeats):
    sys.path.insert(0, os.path.join(HERE, ".."))
    import jax

    import diffjax as dj

    pm = dj.models.load_pretrained(os.path.join(out, "ddpm_cifar10_random"))
    model = pm.model()
    shape = (BATCH,) + pm.data_shape

    def run(seed):
        return jax.block_until_ready(dj.sample(jax.random.key(seed), pm.sde, model, "dpmpp_2m", nfe=NFE, shape=shape))

    t0 = time.perf_counter()
    run(0)  # warm-up: compiles
    first = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        run(r + 1)
        times.append(time.perf_counter() - t0)
    with np.load(os.path.join(out, "torch.npz")) as f:
        ref = {k: f[k] for k in f.files}
    with open(os.path.join(out, "torch.json")) as fh:
        meta = json.load(fh)
    ours = pm.network_output(ref["x"], ref["steps"])
    diff = float(np.max(np.abs(ours - ref["forward"])) / np.max(np.abs(ref["forward"])))
    t_torch, t_jax = float(np.median(ref["times"])), float(np.median(times))
    result = {
        "model": "UNet2DModel, google/ddpm-cifar10-32 architecture, random weights",
        "params": int(sum(np.prod(v.shape) for v in jax.tree.leaves(__import__("flax").nnx.state(pm.net)))),
        "batch": BATCH,
        "nfe": NFE,
        "repeats": repeats,
        "diffusers_seconds": t_torch,
        "diffjax_seconds": t_jax,
        "diffjax_first_call_seconds": first,
        "images_per_second": {"diffusers": BATCH / t_torch, "diffjax": BATCH / t_jax},
        "speedup_diffjax_over_diffusers": t_torch / t_jax,
        "forward_max_rel_diff": diff,
        "reference": meta,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
    }
    path = os.path.join(HERE, "results", "bench_pretrained")
    with open(path + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    md = [
        "# diffusers vs diffjax: DDPM CIFAR-10 UNet2DModel (random weights), DPM-Solver++ 2M, NFE 10, batch 16",
        "",
        f"{os.cpu_count()} CPU cores, jax {jax.__version__} ({jax.default_backend()}), torch {meta['torch']} "
        f"({meta['threads']} threads), diffusers {meta['diffusers']}; median of {repeats} runs after one warm-up run.",
        "",
        "| | seconds per batch | images/s |",
        "|---|---|---|",
        f"| diffusers (DPMSolverMultistepScheduler) | {t_torch:.2f} | {BATCH / t_torch:.2f} |",
        f"| diffjax (dpmpp_2m) | {t_jax:.2f} | {BATCH / t_jax:.2f} |",
        "",
        f"diffjax / diffusers speed: **{t_torch / t_jax:.2f}×**; diffjax's first call (compilation included): "
        f"{first:.1f} s. One forward pass on the same input: max relative difference {diff:.1e}.",
    ]
    with open(path + ".md", "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("torch", "jax"):
        raise SystemExit(__doc__)
    reps = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    (torch_step if sys.argv[1] == "torch" else jax_step)(sys.argv[2], reps)
