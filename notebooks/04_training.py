# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training a diffusion model in a minute (CPU)
#
# A residual MLP on the 2-D ring, trained with the EDM loss (log-normal σ, λ(σ) = 1/c_out²) by the library's
# trainer (Adam with warm-up, gradient clipping, EMA), then sampled with three solvers of the library.
# The same code trains a UNet on images: only the network and the data source change.
# `DIFFJAX_FAST=1` trains for fewer steps.

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.training import LossConfig, TrainConfig, Trainer

FAST = os.environ.get("DIFFJAX_FAST") == "1"
steps = 300 if FAST else 3000

# %%
data = dd.toy("ring", 20000)
sde = dj.EDM()
net = dj.models.MLP((2,), width=128, depth=3, rngs=nnx.Rngs(0))
trainer = Trainer(
    sde,
    net,
    data,
    TrainConfig(steps=steps, batch_size=256, lr=2e-3, ema_half_life=100, log_every=max(steps // 10, 1), progress=False),
    LossConfig(),
)
rows = trainer.train()
plt.plot([r["step"] for r in rows], [r["loss"] for r in rows], "o-", label="train loss")
plt.plot(rows[-1]["step"], rows[-1]["eval_loss"], "s", label="held-out loss (EMA)")
plt.xlabel("step")
plt.legend()
plt.show()

# %% [markdown]
# Sample the EMA model with EDM's Heun sampler, DPM-Solver++(2M) and Euler–Maruyama, and compare with the data
# by the sliced Wasserstein distance.

# %%
model = trainer.model()
ref = data.x[:4000]
fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
axes[0].scatter(ref[:1000, 0], ref[:1000, 1], s=1)
axes[0].set_title("data")
for ax, (solver, nfe) in zip(axes[1:], [("edm_heun", 19), ("dpmpp_2m", 10), ("euler_maruyama", 100)]):
    x = np.asarray(dj.sample(jax.random.key(1), sde, model, solver, nfe=nfe, shape=(1000, 2)))
    sw = dj.metrics.sliced_wasserstein(x, ref, jax.random.key(2))
    ax.scatter(x[:, 0], x[:, 1], s=1)
    ax.set_title(f"{solver}, NFE {nfe}: SW₂ {sw:.3f}")
for ax in axes:
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
plt.show()
