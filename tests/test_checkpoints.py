"""Checkpoint integrity: checksums verified on restore, a one-paragraph error for a corrupt checkpoint, the
fallback to the previous one, a signature covering every network field, logs without stale rows."""

import csv
import glob
import json
import os
import pathlib
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.models import MLP
from diffjax.training import LossConfig, TrainConfig, Trainer
from diffjax.training.trainer import CheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _trainer(work, steps=30, embedding="positional", width=16):
    cfg = TrainConfig(
        steps=steps, batch_size=16, log_every=10, ckpt_every=10, keep=5, progress=False, async_checkpoint=False
    )
    return Trainer(
        dj.EDM(),
        MLP((2,), width, 1, embedding=embedding, rngs=nnx.Rngs(0)),
        dd.toy("ring", 500),
        cfg,
        LossConfig(),
        str(work),
    )


def _flip_a_bit(work, step):
    """Flip one bit in the middle of the largest array file of checkpoint ``step`` (the OCDBT data of its arrays)."""
    files = [f for f in glob.glob(f"{work}/checkpoints/{step}/default/d/*") if os.path.isfile(f)]
    big = max(files, key=os.path.getsize)
    data = bytearray(open(big, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(big, "wb").write(bytes(data))


def test_altered_checkpoint_is_caught_and_previous_one_restores(tmp_path):
    tr = _trainer(tmp_path)
    tr.train()
    assert sorted(os.listdir(tmp_path / "checksums")) == ["10.sha256", "20.sha256", "30.sha256"]
    ref20 = _trainer(tmp_path)
    assert ref20.restore(20) == 20
    params20 = jax.tree.map(np.asarray, ref20.state["params"])
    _flip_a_bit(tmp_path, 30)
    with pytest.raises(CheckpointError) as err:
        _trainer(tmp_path).restore()
    msg = str(err.value)
    assert "checkpoint 30" in msg and "cannot be read" in msg and "previous" in msg and len(msg) < 800
    assert err.value.__cause__ is None and err.value.__context__ is None
    with open(tmp_path / "checksums" / "20.sha256", "w") as f:  # arrays that read fine but are not the ones saved
        f.write("0" * 64)
    with pytest.raises(CheckpointError, match="checkpoint 20 .* does not match its checksum"):
        _trainer(tmp_path).restore(20)
    with open(tmp_path / "checksums" / "20.sha256", "w") as f:
        from diffjax.training.trainer import state_digest

        f.write(state_digest(ref20.state))
    again = _trainer(tmp_path, steps=40)
    assert again.restore("previous") == 20
    for a, b in zip(jax.tree.leaves(params20), jax.tree.leaves(again.state["params"])):
        np.testing.assert_array_equal(a, np.asarray(b))
    rows = again.train(resume=False)
    assert os.listdir(tmp_path / "unusable_checkpoints")
    assert [r["step"] for r in rows] == [30, 40]
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert steps == [10, 20, 30, 40]  # the first run's row 30 was dropped when the run went back to 20
    csv_steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert csv_steps == [10, 20, 30, 40]
    with pytest.raises(CheckpointError, match="no checkpoint 7"):
        _trainer(tmp_path).restore(7)


def test_signature_covers_every_network_field(tmp_path):
    """Same parameter shapes, another embedding (positional → fourier): refused, naming the network."""
    _trainer(tmp_path, steps=10).train()
    with pytest.raises(ValueError, match="network structure or fields"):
        _trainer(tmp_path, steps=20, embedding="fourier").restore()
    with pytest.raises(ValueError, match="parameter shapes"):
        _trainer(tmp_path, steps=20, width=8).restore()


def test_train_script_resume_from_previous(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    import train

    work = tmp_path / "run"
    args = [
        "--config",
        str(ROOT / "experiments" / "configs" / "default.py") + ":toy-edm",
        "--workdir",
        str(work),
        "--set",
        "train.log_every=10",
        "--set",
        "train.ckpt_every=10",
        "--set",
        "model.width=16",
        "--set",
        "train.eval_samples=0",
    ]
    train.main(args + ["--set", "train.steps=20"])
    _flip_a_bit(work, 20)
    with pytest.raises(SystemExit) as err:
        train.main(args + ["--set", "train.steps=30"])
    assert "checkpoint 20" in str(err.value) and "--resume-from previous" in str(err.value)
    train.main(args + ["--set", "train.steps=30", "--resume-from", "previous"])
    assert [json.loads(line)["step"] for line in open(work / "metrics.jsonl")] == [10, 20, 30]
