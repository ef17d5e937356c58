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
# # The forward processes side by side
#
# VP, VE, EDM, blurring (BDM), critically-damped Langevin (CLD) and the momentum-based FDM: all linear SDEs
# `du = F(t) u dt + G(t) dW` with closed-form kernels on one shared block algebra. `DIFFJAX_FAST=1` runs small.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import diffjax as dj

FAST = os.environ.get("DIFFJAX_FAST") == "1"
print(dj.diffusions.available())

# %% [markdown]
# ## Mean factor and noise level along time
# For each scalar process, `x_t = α(t) x_0 + σ(t) z`. FDM replaces the base's mean factor by the momentum
# factor `s_F`, which decays slowly at first (a "heavy-ball" start).

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
for sde in [dj.VP(), dj.VP(sub_vp=True), dj.VE(), dj.EDM(), dj.FDM("edm"), dj.FDM("vp")]:
    t = jnp.linspace(sde.t_min, sde.T, 200)
    u = (t - sde.t_min) / (sde.T - sde.t_min)
    label = sde.name + ("(sub)" if getattr(sde, "sub_vp", False) else "")
    label += "-" + sde.base.name if hasattr(sde, "base") else ""
    ax[0].plot(u, sde.alpha(t), label=label)
    ax[1].semilogy(u, sde.rho(t), label=label)
ax[0].set_title("mean factor α(t)")
ax[1].set_title("noise-to-signal ratio σ/α")
for a in ax:
    a.set_xlabel("normalised time")
    a.legend(fontsize=8)
plt.show()

# %% [markdown]
# FDM against its base: same noise-to-signal ratio, a different mean factor.

# %%
fdm, base = dj.FDM("edm", gamma=2.0), dj.EDM()
sig = jnp.linspace(0.002, 80.0, 300)
plt.plot(sig, fdm.mean_factor(sig), label="FDM s_F (γ = 2)")
plt.plot(sig, dj.FDM("edm", gamma=1.0).mean_factor(sig), label="FDM s_F (γ = 1)")
plt.plot(sig, base.alpha(sig) * jnp.ones_like(sig), label="EDM (α ≡ 1)")
plt.xlabel("σ")
plt.legend()
plt.show()

# %% [markdown]
# ## Forward trajectories of one 2-D point

# %%
key = jax.random.key(0)
x0 = jnp.array([[1.0, 0.5]])
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, sde in zip(axes, [dj.VP(), dj.EDM(), dj.CLD()]):
    ts = jnp.linspace(sde.t_min, sde.T, 60)
    ys = jnp.stack([sde.data_part(sde.perturb(jax.random.fold_in(key, 7), jnp.repeat(x0, 20, 0), t)[0]) for t in ts])
    for i in range(20):
        ax.plot(ts, ys[:, i, 0], lw=0.6)
    ax.set_title(f"{sde.name}: x_t[0] (independent kernel draws)")
plt.show()

# %% [markdown]
# ## CLD phase space
# CLD couples each coordinate with a velocity. Noise enters the velocity only; the data coordinate is reached
# through the coupling, so Σ_xx grows like t³ at first.

# %%
sde = dj.CLD()
n = 300 if FAST else 2000
x0 = jnp.full((n, 1), 1.0)
fig, ax = plt.subplots(figsize=(5, 5))
for t in [0.01, 0.05, 0.2, 1.0]:
    (x, v), _ = sde.perturb(jax.random.fold_in(key, int(t * 100)), x0, t)
    ax.scatter(x[:, 0], v[:, 0], s=2, label=f"t = {t}")
ax.set_xlabel("x")
ax.set_ylabel("v")
ax.legend()
plt.show()
print("Σ_t at t = 1e-3:\n", np.asarray(sde.cov_block(1e-3)))

# %% [markdown]
# ## Blurring an image
# Per DCT frequency, `α_k(t) = a(t) d_k(t)`: high frequencies decay first, then the noise takes over.

# %%
img, _ = dj.testbed.digits_data()
blur = dj.Blur((8, 8, 1), sigma_blur_max=20.0)
x0 = jnp.asarray(img[:1], jnp.float32)
times = [0.0001, 0.2, 0.4, 0.6, 0.8, 0.95]
fig, axes = plt.subplots(2, len(times), figsize=(2 * len(times), 4.2))
for j, t in enumerate(times):
    axes[0, j].imshow(blur.mean(x0, t)[0, :, :, 0], cmap="gray")
    axes[0, j].set_title(f"mean, t={t}")
    axes[1, j].imshow(blur.perturb(jax.random.fold_in(key, j), x0, t)[0][0, :, :, 0], cmap="gray")
    axes[1, j].set_title("sample")
for a in axes.ravel():
    a.axis("off")
plt.show()

# %% [markdown]
# ## The same test-bed data sampled back through each process (gDDIM, NFE 20)

# %%
data = dj.testbed.ring()
fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
for ax, sde in zip(axes, [dj.VP(), dj.EDM(), dj.CLD(), dj.FDM("vp")]):
    x = dj.sample(key, sde, data.score_fn(sde), solver=dj.solvers.GDDIM(degree=2), nfe=20, shape=(n, 2))
    assert bool(jnp.all(jnp.isfinite(x)))
    ax.scatter(x[:, 0], x[:, 1], s=1)
    ax.set_title(sde.name)
    ax.set_aspect("equal")
plt.show()
