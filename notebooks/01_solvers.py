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
# # Solvers on the exact-score test bed
#
# Pick a diffusion and a solver; see samples, trajectories and the error against an adaptive diffrax reference
# as the number of network evaluations (NFE) grows. The score is *exact* (a Gaussian mixture), so every error
# here is the solver's own discretisation error. Set `DIFFJAX_FAST=1` for a quick run (the test suite does).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import diffjax as dj
from diffjax import interop

FAST = os.environ.get("DIFFJAX_FAST") == "1"
N = 256 if FAST else 2000
print("solvers:", dj.solvers.available())

# %% [markdown]
# ## Choose a diffusion and a solver

# %%
sde = dj.VP()  # or dj.VE(), dj.EDM()
solver = "dpmpp_2m"  # any name above, or an instance such as dj.solvers.UniPC(predictor_order=3)
data = dj.testbed.ring()
score = data.score_fn(sde)

key = jax.random.key(0)
y_T = sde.prior_sample(key, (N, 2))
x, path = dj.sample(key, sde, score, solver=solver, nfe=10, init=y_T, trajectory=True)
print(x.shape, path.shape)

# %%
fig, ax = plt.subplots(1, 2, figsize=(9, 4))
ax[0].scatter(x[:, 0], x[:, 1], s=1)
ax[0].set_title(f"{solver}, NFE 10")
for i in range(min(N, 30)):
    ax[1].plot(path[:, i, 0], path[:, i, 1], lw=0.7)
ax[1].set_title("trajectories (one point per step)")
for a in ax:
    a.set_aspect("equal")
plt.show()

# %% [markdown]
# ## Error vs NFE
# The reference integrates the same prior noise with diffrax's adaptive Dopri8.

# %%
ref = interop.reference_sample(sde, score, y_T, rtol=1e-7, atol=1e-7)
nfes = [4, 8, 16] if FAST else [4, 6, 8, 10, 15, 20, 30, 50]
solvers = (
    ["ddim", "dpmpp_2m", "edm_heun"] if FAST else ["ode_euler", "ddim", "edm_heun", "dpmpp_2m", "dpmpp_3m", "unipc"]
)
errors = {}
for s in solvers:
    errors[s] = [
        float(jnp.sqrt(jnp.mean((dj.sample(key, sde, score, solver=s, nfe=n, init=y_T) - ref) ** 2))) for n in nfes
    ]
for s, e in errors.items():
    plt.loglog(nfes, e, "o-", label=s)
plt.xlabel("NFE")
plt.ylabel("pathwise RMSE")
plt.legend()
plt.show()
assert all(np.isfinite(v).all() for v in errors.values())
