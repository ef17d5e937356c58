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
# # A new diffusion in a few lines
#
# A researcher's new forward process is often just a drift `F(t)` and a diffusion `G(t)`.
# `dj.diffusions.custom(F, G)` derives the kernel `Ψ(t, s)`, the covariance `Σ(t)`, the prior, `perturb`, the
# exact test-bed scores, the training loss and every sampler. Here: the cosine schedule
# `α(t) = cos(πt/2)` written as an SDE — `f = −(π/2) tan(πt/2)`, `g² = π tan(πt/2)` — trained on the ring and
# sampled with three solvers. `DIFFJAX_FAST=1` trains briefly.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.training import LossConfig, TrainConfig, Trainer

FAST = os.environ.get("DIFFJAX_FAST") == "1"

# %% [markdown]
# The whole definition (T < 1 because tan diverges at 1; a tiny initial variance keeps Σ invertible at 0):

# %%
cosine = dj.diffusions.custom(
    F=lambda t: -0.5 * jnp.pi * jnp.tan(0.5 * jnp.pi * t),
    G=lambda t: jnp.sqrt(jnp.pi * jnp.tan(0.5 * jnp.pi * t)),
    T=0.98,
    t_min=1e-3,
    initial_cov=1e-8,
    name="CosineVP",
)
t = jnp.linspace(0.01, 0.98, 100)
plt.plot(t, cosine.alpha(t), label="α(t) from the ODE")
plt.plot(t, jnp.cos(0.5 * jnp.pi * t), "--", label="cos(πt/2)")
plt.plot(t, cosine.sigma(t), label="σ(t)")
plt.legend()
plt.show()
print("max |α − cos| =", float(jnp.max(jnp.abs(cosine.alpha(t) - jnp.cos(0.5 * jnp.pi * t)))))

# %% [markdown]
# With the exact score of the ring, every solver samples it (here DPM-Solver++ at NFE 10):

# %%
ring = dj.testbed.ring()
x = dj.sample(jax.random.key(0), cosine, ring.score_fn(cosine), "dpmpp_2m", nfe=10, shape=(1000, 2))
print(
    "sliced W2 to the ring:", dj.metrics.sliced_wasserstein(x, ring.sample(jax.random.key(1), 4000), jax.random.key(2))
)

# %% [markdown]
# Train a small MLP on it (ε-prediction, the generic loss `E‖ε̂(x_t, t) − z‖²` from the diffusion's own
# `perturb`), then sample with three solvers.

# %%
data = dd.toy("ring", 20000)
steps = 300 if FAST else 3000
trainer = Trainer(
    cosine,
    dj.models.MLP((2,), 128, 3, rngs=nnx.Rngs(0)),
    data,
    TrainConfig(steps=steps, batch_size=256, lr=2e-3, ema_half_life=100, log_every=max(steps // 5, 1), progress=False),
    LossConfig(),
)
rows = trainer.train()
print("final loss", rows[-1]["loss"], "held-out", rows[-1]["eval_loss"])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, (solver, nfe) in zip(axes, [("dpmpp_2m", 10), ("edm_heun", 19), ("euler_maruyama", 100)]):
    xs = np.asarray(dj.sample(jax.random.key(3), cosine, trainer.model(), solver, nfe=nfe, shape=(1000, 2)))
    ax.scatter(xs[:, 0], xs[:, 1], s=1)
    ax.set_title(f"{solver}, NFE {nfe}")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
plt.show()

# %% [markdown]
# A Langevin-type process works the same way with `block_size=2` (2×2 blocks on each pixel's `(x, v)`), e.g.
# CLD with another damping; gDDIM, Euler–Maruyama, PC and the PF-ODE integrators apply to it.

# %%
beta, m_inv, damping = 4.0, 4.0, 1.5  # over-damped: CLD is critical at Γ = 2√M = 1 (M = 1/m_inv)
F = lambda t: beta * jnp.array([[0.0, m_inv], [-1.0, -damping * m_inv]])
G = lambda t: jnp.array([[0.0, 0.0], [0.0, jnp.sqrt(2 * damping * beta)]])
langevin = dj.diffusions.custom(F, G, block_size=2, initial_cov=(1e-6, 0.01), t_min=1e-3, name="Langevin")
x = dj.sample(jax.random.key(4), langevin, ring.score_fn(langevin), "gddim_3", nfe=50, shape=(1000, 2))
print(
    "gDDIM on the new Langevin process, sliced W2:",
    dj.metrics.sliced_wasserstein(x, ring.sample(jax.random.key(1), 4000), jax.random.key(2)),
)
