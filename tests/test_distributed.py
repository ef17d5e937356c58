"""Multi-process data-parallel training and sampling with JAX's own distributed runtime (two processes on
localhost, CPU devices, gloo collectives) against a one-process run on the same global batch."""

import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "helpers", "distributed_worker.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_"))}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return env


def test_two_processes_train_and_sample_like_one(tmp_path):
    port = _free_port()
    multi, single = str(tmp_path / "multi.npz"), str(tmp_path / "single.npz")
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, multi, str(i), "2", str(port)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    ref = subprocess.run(
        [sys.executable, WORKER, single, "0", "1", "0"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    a, b = np.load(multi), np.load(single)
    assert int(a["devices"]) == 2 and int(b["devices"]) == 1
    keys = [k for k in a.files if k.startswith("[")]
    assert keys and set(keys) == {k for k in b.files if k.startswith("[")}
    for k in keys:  # same global batches, gradients all-reduced across the processes: same parameters
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-6, err_msg=k)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    assert a["samples"].shape == (16, 2)
    np.testing.assert_allclose(a["samples"], b["samples"], rtol=1e-4, atol=1e-5)
