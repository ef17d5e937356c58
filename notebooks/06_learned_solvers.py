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
# # Learned discretizations
#
# `dj.solvers.learn` fits a solver's discretization to a model and an NFE budget by differentiating the sampler's
# endpoint error against a teacher's endpoints from the same prior draws. The parts it can fit (`what=`, joined by
# `+`): the time grid (`grid`), zero-initialised corrections of the solver's per-step coefficients (`coefs`),
# for multistep solvers corrections of each step's weights on *every* earlier prediction (`history`, each step
# still exact on a constant prediction), and network evaluation times apart from the grid (`times`). The default
# needs no tuning: grid + coefficients, plus history and times at NFE ≤ 5.
# `dj.solvers.optimized_grid` picks a grid by dynamic programming without gradients. Both return a solver that
# `dj.sample` runs like any other. The score here is exact (a Gaussian mixture), so every error is the solver's own.
# Set `DIFFJAX_FAST=1` for a quick run (the test suite does).

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import diffjax as dj
from diffjax import interop

FAST = os.environ.get("DIFFJAX_FAST") == "1"
sde = dj.EDM()
data = dj.testbed.ring() if FAST else dj.testbed.digits()
score = data.score_fn(sde)
opts = dict(num_fit=64, num_heldout=64, steps=30) if FAST else {}

# %% [markdown]
# ## Fit iPNDM at 5 evaluations

# %%
nfe = 5
learned = dj.solvers.learn(jax.random.key(0), sde, score, "ipndm", nfe, data.data_shape, **opts)
optimized = dj.solvers.optimized_grid(
    jax.random.key(1), sde, score, "ipndm", nfe, data.data_shape, num=64 if FAST else 256
)
info = learned.info
print(f"fitted {info['what']} in {info['fit_seconds']:.0f} s")
print(f"held-out RMSE: {info['heldout_rmse_base']:.3e} (default grid) -> {info['heldout_rmse']:.3e} (learned)")
path = learned.save(os.path.join(tempfile.mkdtemp(), "ipndm_nfe5.json"))
assert dj.solvers.load(path) == learned  # JSON round trip (same grid and coefficients, bit for bit)

# %% [markdown]
# ## The grid before and after (noise level σ of every step)

# %%
base_grid = dj.solvers.get("ipndm").build_grid(sde, nfe, "karras")
for i, (name, ts) in enumerate(
    [("Karras ρ=7", base_grid), ("optimized (DP)", optimized.times), ("learned", learned.times)]
):
    plt.semilogy(np.arange(len(ts)), ts, "o-", label=name)
plt.xlabel("step")
plt.ylabel("σ")
plt.legend()
plt.show()

# %% [markdown]
# ## Error vs NFE on fresh prior draws

# %%
y = sde.prior_sample(jax.random.key(42), (256,) + data.data_shape)
ref = interop.reference_sample(sde, score, y, rtol=1e-6, atol=1e-6)
rmse = lambda x: float(jnp.sqrt(jnp.mean((x - ref) ** 2)))
nfes = [4] if FAST else [3, 4, 5, 6, 8, 10]
rows = {"ipndm": [], "ipndm, optimized grid": [], "ipndm, learned": []}
for n in nfes:
    rows["ipndm"].append(rmse(dj.sample(jax.random.key(0), sde, score, "ipndm", nfe=n, init=y)))
    opt = dj.solvers.optimized_grid(jax.random.key(1), sde, score, "ipndm", n, data.data_shape, num=64 if FAST else 256)
    rows["ipndm, optimized grid"].append(rmse(dj.sample(jax.random.key(0), sde, score, opt, nfe=n, init=y)))
    fit = dj.solvers.learn(jax.random.key(0), sde, score, "ipndm", n, data.data_shape, progress=False, **opts)
    rows["ipndm, learned"].append(rmse(dj.sample(jax.random.key(0), sde, score, fit, nfe=n, init=y)))
for name, errs in rows.items():
    plt.loglog(nfes, errs, "o-", label=name)
plt.xlabel("NFE")
plt.ylabel("pathwise RMSE")
plt.legend()
plt.show()
assert all(np.isfinite(v).all() for v in rows.values())

# %% [markdown]
# ## A schedule for other libraries
#
# A grid-only fit transfers to other samplers: `grid_as(sde, "sigmas")` gives the noise levels σ/α that
# diffusers' `scheduler.set_timesteps(sigmas=...)` and k-diffusion's samplers take (append a 0 for their final
# denoising step). Corrections and evaluation times belong to the fitted solver and do not transfer, so a solver
# fitted with them refuses unless asked for its grid alone.

# %%
y_demo = sde.prior_sample(jax.random.key(3), (8,) + data.data_shape)
grid_only = dj.solvers.learn(jax.random.key(0), sde, score, "dpmpp_2m", nfe, data.data_shape, what="grid", **opts)
sigmas = grid_only.grid_as(sde, "sigmas")
print("sigmas:", np.round(sigmas, 4).tolist())
imported = dj.solvers.grid_from_sigmas(sde, sigmas)  # a σ list from elsewhere, back to a diffjax grid
same = dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=nfe, grid=imported, init=y_demo)
assert np.allclose(same, dj.sample(jax.random.key(0), sde, score, grid_only, nfe=nfe, init=y_demo), atol=1e-5)

# %% [markdown]
# ## On a published checkpoint
#
# The same fit works on a network loaded from a published file (`dj.models.load_pretrained`: a diffusers folder,
# an EDM pickle, a score_sde checkpoint). Here a small random-weight diffusers DDPM folder of the test suite stands
# in for `google/ddpm-cifar10-32` (pass that folder instead); its scheduler makes the diffusion a `DiscreteVP`
# through the trained ᾱ_i. With random weights the numbers mean nothing; the mechanics are those of the real model.
# Without an exact score, the teacher is a fine solve of the same model (`teacher=("dpmpp_3m", 40)`).

# %%
pm = dj.models.load_pretrained("tests/fixtures/pretrained/diffusers_ddpm")  # or the folder of google/ddpm-cifar10-32
print(pm)
fit_opts = dict(num_fit=4, num_heldout=4, steps=2, init_grid="base") if FAST else {}
fast = dj.solvers.learn(
    jax.random.key(0),
    pm.sde,
    pm.model(),
    "dpmpp_3m",
    5,
    pm.data_shape,
    teacher=("dpmpp_3m", 10 if FAST else 40),
    progress=False,
    **fit_opts,
)
print(f"held-out RMSE vs the teacher: {fast.info['heldout_rmse_base']:.3e} -> {fast.info['heldout_rmse']:.3e}")
images = dj.sample(jax.random.key(1), pm.sde, pm.model(), fast, nfe=5, shape=(4,) + pm.data_shape)
assert np.all(np.isfinite(np.asarray(images)))
