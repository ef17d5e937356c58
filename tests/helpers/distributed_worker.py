"""One process of the two-process training test (tests/test_distributed.py); also the one-process reference.

    python distributed_worker.py OUT.npz PROCESS_ID NUM_PROCESSES PORT

With NUM_PROCESSES > 1 it joins a local coordinator (jax.distributed, CPU devices, gloo collectives), trains a small
MLP data-parallel for a few steps on the global batch (each process loads its half) and samples with ``mesh=`` over
both processes' devices; process 0 writes the final parameters and the gathered samples to OUT.npz.
"""

import sys

import jax

out, pid, nproc, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
jax.config.update("jax_platforms", "cpu")
if nproc > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=nproc, process_id=pid, initialization_timeout=120
    )

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import diffjax as dj  # noqa: E402
import diffjax.data as dd  # noqa: E402
from diffjax.training import LossConfig, TrainConfig, Trainer  # noqa: E402

assert jax.process_count() == nproc, (jax.process_count(), nproc)
cfg = TrainConfig(
    steps=5,
    batch_size=32,
    lr=1e-2,
    warmup_steps=2,
    log_every=5,
    eval_every=0,
    ckpt_every=0,
    eval_batches=1,
    progress=False,
)
tr = Trainer(dj.EDM(), dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(0)), dd.toy("ring", 2000), cfg, LossConfig())
rows = tr.train()
params = {
    jax.tree_util.keystr(p): np.asarray(multihost_utils.process_allgather(v, tiled=True))
    for p, v in jax.tree_util.tree_leaves_with_path(tr.state["params"])
}
mesh = Mesh(np.asarray(jax.devices()), ("data",))
x = dj.sample(jax.random.key(3), dj.EDM(), tr.model(), "edm_heun", nfe=9, shape=(16, 2), mesh=mesh)
samples = np.asarray(multihost_utils.process_allgather(x, tiled=True))
if pid == 0:
    np.savez(out, samples=samples, loss=rows[-1]["loss"], devices=jax.device_count(), **params)
print(f"process {pid}/{nproc}: {jax.device_count()} devices, loss {rows[-1]['loss']:.6f}", flush=True)
