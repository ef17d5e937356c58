"""Sharded, chunked and compiled-once sampling; data-parallel training (issue: speed and scale)."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj

ROOT = pathlib.Path(__file__).resolve().parents[1]
RING = dj.testbed.ring()


def test_chunked_equals_one_shot_and_resumes(tmp_path):
    sde = dj.VP()
    score = RING.score_fn(sde)
    one = dj.sample(jax.random.key(3), sde, score, "dpmpp_2m", nfe=8, shape=(50, 2))
    out = tmp_path / "chunks"
    run = lambda **kw: dj.sample_chunked(
        kw.pop("key", jax.random.key(3)),
        sde,
        score,
        kw.pop("solver", "dpmpp_2m"),
        8,
        (50, 2),
        chunk=16,
        out_dir=str(out),
        progress=False,
        **kw,
    )
    x = run()
    np.testing.assert_allclose(x, one, atol=1e-6)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [".lock", "manifest.json"] + [f"chunk_{i:05d}.{e}" for i in range(4) for e in ("npy", "sha256")]
    )
    # an interrupted / damaged run: chunk 2 lost, chunk 0 altered, chunk 3 truncated; the rerun recomputes exactly
    # those (chunk 1 is verified and kept)
    kept = (out / "chunk_00001.npy").stat().st_mtime_ns
    (out / "chunk_00002.npy").unlink()
    np.save(out / "chunk_00000.npy", np.full((16, 2), 7.0, np.float32))
    data = (out / "chunk_00003.npy").read_bytes()
    (out / "chunk_00003.npy").write_bytes(data[: len(data) // 2])
    x2 = run()
    np.testing.assert_array_equal(x2, x)
    assert (out / "chunk_00001.npy").stat().st_mtime_ns == kept
    # another run into the same folder is refused, naming what differs
    with pytest.raises(ValueError, match="another sampling run.*differs in key"):
        run(key=jax.random.key(4))
    with pytest.raises(ValueError, match="differs in solver"):
        run(solver="edm_heun")
    # a folder with stray chunk files and no manifest is not trusted
    stray = tmp_path / "stray"
    stray.mkdir()
    np.save(stray / "chunk_00000.npy", np.zeros((16, 2), np.float32))
    with pytest.raises(ValueError, match="no manifest"):
        dj.sample_chunked(
            jax.random.key(3), sde, score, "dpmpp_2m", 8, (50, 2), chunk=16, out_dir=str(stray), progress=False
        )


def test_no_recompilation_when_only_key_or_data_change():
    sde = dj.EDM()
    score = RING.score_fn(sde)
    traces = []  # a Python side effect runs once per trace (= per compilation)

    def fn(k, x):
        traces.append(1)
        return dj.sample(k, sde, score, "edm_heun_sde", nfe=9, init=x)

    f = jax.jit(fn)
    x1 = f(jax.random.key(0), 80.0 * jax.random.normal(jax.random.key(1), (64, 2)))
    x2 = f(jax.random.key(5), 80.0 * jax.random.normal(jax.random.key(2), (64, 2)))
    assert len(traces) == 1 and not np.allclose(x1, x2)


def test_bf16_sampling_is_finite_and_close_to_float32():
    sde = dj.VP()
    score = RING.score_fn(sde)
    ref = RING.sample(jax.random.key(9), 4000)
    y = sde.prior_sample(jax.random.key(0), (1000, 2))
    x32 = dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=10, init=y)
    x16 = dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=10, init=y.astype(jnp.bfloat16), dtype=jnp.bfloat16)
    assert x16.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x16)))
    assert float(jnp.sqrt(jnp.mean((x16.astype(jnp.float32) - x32) ** 2))) < 0.05
    sw32 = dj.metrics.sliced_wasserstein(x32, ref, jax.random.key(1))
    sw16 = dj.metrics.sliced_wasserstein(np.asarray(x16, np.float32), ref, jax.random.key(1))
    assert sw16 < sw32 + 0.02


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import diffjax as dj, diffjax.data as dd
from diffjax.training import Trainer, TrainConfig, LossConfig
assert jax.device_count() == 8
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
ring = dj.testbed.ring(); sde = dj.VP(); score = ring.score_fn(sde)
one = dj.sample(jax.random.key(1), sde, score, "edm_heun_sde", nfe=9, shape=(64, 2))
f = jax.jit(lambda k: dj.sample(k, sde, score, "edm_heun_sde", nfe=9, shape=(64, 2), mesh=mesh))
sh = f(jax.random.key(1))
np.testing.assert_allclose(sh, one, atol=1e-4)  # same samples up to float reordering
assert len(sh.sharding.device_set) == 8
try:
    dj.sample(jax.random.key(1), sde, score, "edm_heun", nfe=9, shape=(60, 2), mesh=mesh)
    raise AssertionError("no error")
except ValueError as e:
    assert "divisible" in str(e)
# data-parallel training: 8 devices give the single-device result
def run(devices):
    net = dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=3, batch_size=64, progress=False, log_every=1)
    tr = Trainer(sde, net, dd.toy("ring", 500), cfg, LossConfig())
    return tr, tr.train()
tr8, rows8 = run(8)
assert len(tr8.state["params"]["out"]["kernel"].sharding.device_set) == 8
with open("ONE_DEVICE_LOSSES", "w") as fh:
    fh.write(repr([r["loss"] for r in rows8]))
print("OK")
"""


def test_sharded_sampling_and_training_on_8_fake_devices(tmp_path):
    env = {
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "PATH": "/usr/bin:/bin",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    res = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
    # the same three steps on one device give the same losses
    from flax import nnx

    import diffjax.data as dd
    from diffjax.training import LossConfig, TrainConfig, Trainer

    net = dj.models.MLP((2,), 32, 2, rngs=nnx.Rngs(0))
    tr = Trainer(
        dj.VP(),
        net,
        dd.toy("ring", 500),
        TrainConfig(steps=3, batch_size=64, progress=False, log_every=1),
        LossConfig(),
    )
    losses1 = [r["loss"] for r in tr.train()]
    losses8 = eval((tmp_path / "ONE_DEVICE_LOSSES").read_text())
    np.testing.assert_allclose(losses8, losses1, rtol=1e-4)
