"""Never lose a run: no non-finite checkpoint, no keep=0 wipe, one writer per folder, caches tied to their model,
atomic outputs, one-paragraph failures, graceful interrupts (docs/RELIABILITY.md, "Runs")."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import diffjax as dj
from diffjax.files import FolderInUse, FolderLock

ROOT = pathlib.Path(__file__).resolve().parents[1]
CFG = str(ROOT / "experiments" / "configs" / "default.py")
SMALL = [
    "--set",
    "model.width=16",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.log_every=10",
    "--set",
    "train.eval_samples=0",
]
sys.path.insert(0, str(ROOT / "experiments"))


def _env():
    return {
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "MPLBACKEND": "Agg",
        "PATH": "/usr/bin:/bin",
        **{k: v for k, v in os.environ.items() if k == "JAX_DISABLE_MOST_OPTIMIZATIONS"},
    }


def _train_cmd(workdir, *extra):
    return [
        sys.executable,
        str(ROOT / "experiments" / "train.py"),
        "--config",
        CFG + ":toy-edm",
        "--workdir",
        str(workdir),
        *SMALL,
        *extra,
    ]


def _checkpoints(workdir):
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def _train_in_process(workdir, *extra):
    """train.py's main() in this process (the compiled steps are shared with the other in-process runs)."""
    import train

    train.main(_train_cmd(workdir, *extra)[2:])


def _digest(workdir, step):
    return (pathlib.Path(workdir) / "checksums" / f"{step}.sha256").read_text().strip()


# ---- 1, 2: a diverging run keeps its good checkpoints; keep=0 is refused ---------------------------------------
def test_divergence_never_replaces_good_checkpoints(tmp_path):
    import train

    work = tmp_path / "run"
    ck = ["--set", "train.ckpt_every=10", "--set", "train.keep=3"]
    train.main(["--config", CFG + ":toy-edm", "--workdir", str(work), *SMALL, *ck, "--set", "train.steps=30"])
    good = {s: _digest(work, s) for s in _checkpoints(work)}
    assert sorted(good) == [10, 20, 30]
    # lr 1e6: the parameters blow up within a few steps; the loss is logged only every 100 steps
    with pytest.raises(
        SystemExit,
        match=r"training diverged: the (loss|parameters) became non-finite by step 40\. "
        r"Nothing was saved after checkpoint 30, which is kept",
    ):
        train.main(
            [
                "--config",
                CFG + ":toy-edm",
                "--workdir",
                str(work),
                *SMALL,
                *ck,
                "--set",
                "train.steps=100",
                "--set",
                "train.lr=1e6",
                "--set",
                "train.grad_clip=0.0",
                "--set",
                "train.log_every=100",
            ]
        )
    assert {s: _digest(work, s) for s in _checkpoints(work)} == good  # nothing written, nothing deleted
    trainer = __import__("common").open_run(str(work))[1]  # the latest checkpoint is still the good one
    assert int(trainer.state["step"]) == 30


def test_keep_zero_is_refused_before_anything_is_written(tmp_path):
    import train

    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        dj.training.TrainConfig(keep=0)
    with pytest.raises(SystemExit, match="keep must be an integer >= 1"):
        train.main(["--config", CFG + ":toy-edm", "--workdir", str(tmp_path / "r"), "--set", "train.keep=0"])
    assert not (tmp_path / "r").exists()


def test_trainer_with_fewer_steps_than_its_checkpoint_raises(tmp_path):
    from flax import nnx

    from diffjax.training import TrainConfig, Trainer

    make = lambda: Trainer(
        dj.EDM(),
        dj.models.MLP((2,), 16, 1, rngs=nnx.Rngs(0)),
        dj.data.toy("ring", 256),
        TrainConfig(steps=20, batch_size=16, ckpt_every=10, progress=False),
        workdir=str(tmp_path),
    )
    make().train()
    with pytest.raises(ValueError, match="holds a checkpoint at step 20 > steps=10: nothing to do"):
        make().train(steps=10)


# ---- 3: one writer per folder ----------------------------------------------------------------------------------
def test_second_training_on_a_workdir_is_refused_at_once(tmp_path):
    work = tmp_path / "run"
    a = subprocess.Popen(
        _train_cmd(work, "--set", "train.steps=100000", "--set", "train.ckpt_every=50"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while not (work / "checksums").exists() and time.time() < deadline and a.poll() is None:
            time.sleep(0.5)
        assert a.poll() is None, a.stderr.read()[-2000:]
        t0 = time.time()
        b = subprocess.run(
            _train_cmd(work, "--set", "train.steps=300"), env=_env(), capture_output=True, text=True, timeout=300
        )
        assert b.returncode != 0 and "is in use: training by PID" in b.stderr and time.time() - t0 < 120
        assert len(b.stderr.strip().splitlines()) <= 2, b.stderr  # one line (after the config note, if any)
        assert json.loads((work / "config.json").read_text())["train"]["steps"] == 100000  # A's config kept
    finally:
        a.send_signal(signal.SIGINT)
        a.wait(timeout=300)
    # the same chunk folder, two writers: the second is refused at once
    folder = tmp_path / "chunks"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from diffjax.files import FolderLock; import time; "
            f"FolderLock({str(folder)!r}, 'test').acquire(); print('held', flush=True); time.sleep(60)",
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        sde = dj.EDM()
        with pytest.raises(FolderInUse, match="is in use: test by PID"):
            dj.sample_chunked(
                jax.random.key(1),
                sde,
                dj.testbed.ring().score_fn(sde),
                "dpmpp_2m",
                4,
                (8, 2),
                4,
                str(folder),
                progress=False,
            )
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(str(folder)):  # the holder died: the lock is free again
        pass


def test_two_trainings_started_together_one_wins(tmp_path):
    work = tmp_path / "run"
    procs = [
        subprocess.Popen(
            _train_cmd(work, "--set", "train.steps=20", "--set", "train.ckpt_every=10"),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outs
    assert any("is in use" in err for _, err in outs)
    assert [json.loads(l)["step"] for l in open(work / "metrics.jsonl")] == [10, 20]  # one run's rows only


# ---- 4: cached samples belong to their model -------------------------------------------------------------------
def test_chunk_folder_refuses_samples_of_another_model(tmp_path):
    from flax import nnx

    sde = dj.EDM()
    nets = [dj.models.MLP((2,), 8, 1, rngs=nnx.Rngs(seed)) for seed in (0, 1)]
    models = [dj.models.precondition(sde, n) for n in nets]
    run = lambda m: dj.sample_chunked(
        jax.random.key(0), sde, m, "dpmpp_2m", 4, (8, 2), 4, str(tmp_path), progress=False
    )
    first = run(models[0])
    np.testing.assert_array_equal(run(models[0]), first)  # same weights: the chunks are reused
    with pytest.raises(ValueError, match=r"differs in model \(its weights or structure\)"):
        run(models[1])


def test_evaluate_after_a_resumed_branch_does_not_reuse_old_samples(tmp_path):
    import evaluate
    import train

    work = str(tmp_path / "run")
    base = ["--config", CFG + ":toy-edm", "--workdir", work, *SMALL, "--set", "train.ckpt_every=10"]
    train.main(base + ["--set", "train.steps=20"])
    ev = ["--workdir", work, "--solver", "dpmpp_2m", "--nfe", "6", "--num", "64", "--chunk", "32", "--quiet"]
    evaluate.main(ev)
    train.main(base + ["--set", "train.steps=20", "--set", "train.lr=3e-2", "--resume-from", "10"])  # another step 20
    evaluate.main(ev)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "eval" / "results.jsonl")]
    assert len(rows) == 2 and rows[0]["checkpoint_step"] == rows[1]["checkpoint_step"] == 20
    assert rows[0]["model"] != rows[1]["model"] and rows[0]["fd_pixels"] != rows[1]["fd_pixels"]
    assert len(os.listdir(tmp_path / "run" / "eval" / "samples")) == 2


# ---- 5: a grid that starts below T -----------------------------------------------------------------------------
def test_grid_below_T_needs_init(tmp_path):
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    grid = np.geomspace(20, 0.002, 11)
    with pytest.raises(ValueError, match="grid starts at t=20, below EDM's T=80.*pass init="):
        dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=10, shape=(8, 2), grid=grid)
    init = 20.0 * jax.random.normal(jax.random.key(1), (8, 2))
    assert np.all(
        np.isfinite(np.asarray(dj.sample(jax.random.key(0), sde, score, "dpmpp_2m", nfe=10, init=init, grid=grid)))
    )
    # a hand-edited learned solver whose grid starts at 10
    learned = dj.solvers.learn(
        jax.random.key(0),
        sde,
        score,
        "dpmpp_2m",
        4,
        (2,),
        num_fit=8,
        num_heldout=8,
        steps=2,
        init_grid="base",
        teacher=("dpmpp_2m", 16),
        progress=False,
    )
    obj = json.loads(json.dumps(learned.to_json()))
    obj["grid"][0] = 10.0
    (tmp_path / "edited.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="grid starts at t=10"):
        dj.sample(jax.random.key(0), sde, score, dj.solvers.load(str(tmp_path / "edited.json")), nfe=4, shape=(8, 2))


def test_learned_solver_file_with_wrong_values_is_named(tmp_path):
    sde = dj.EDM()
    score = dj.testbed.ring().score_fn(sde)
    learned = dj.solvers.learn(
        jax.random.key(0),
        sde,
        score,
        "dpmpp_2m",
        4,
        (2,),
        num_fit=8,
        num_heldout=8,
        steps=2,
        init_grid="base",
        teacher=("dpmpp_2m", 16),
        progress=False,
    )
    good = json.loads(json.dumps(learned.to_json()))
    (table,) = good["corrections"]
    for value, match in [
        ([[1, 2], [3]], "rectangular array of numbers"),
        ("abc", "rectangular array of numbers"),
        ([[0.0, 0.0], [0.0, 0.0]], r"has shape \(2, 2\); 'dpmpp_2m' at nfe=4 has a table of shape"),
    ]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(dict(good, corrections={table: value})))
        with pytest.raises(ValueError, match=match):
            dj.sample(jax.random.key(0), sde, score, dj.solvers.load(str(path)), nfe=4, shape=(4, 2))


# ---- 5 (scripts): atomic outputs, distinct names, bad arguments ------------------------------------------------
def test_sample_script_outputs_are_atomic_and_distinct(tmp_path, monkeypatch):
    import sample
    import train

    work = str(tmp_path / "run")
    train.main(["--config", CFG + ":toy-edm", "--workdir", work, *SMALL, "--set", "train.steps=10"])
    base = ["--workdir", work, "--solver", "dpmpp_2m", "--nfe", "4", "--num", "8"]
    sample.main(base)
    sample.main(base + ["--seed", "1"])
    files = sorted(p.name for p in pathlib.Path(work).glob("samples_*"))
    assert files == [
        "samples_dpmpp_2m_nfe4_seed0.npz",
        "samples_dpmpp_2m_nfe4_seed0.png",
        "samples_dpmpp_2m_nfe4_seed1.npz",
        "samples_dpmpp_2m_nfe4_seed1.png",
    ]
    good = np.load(pathlib.Path(work) / "samples_dpmpp_2m_nfe4_seed0.npz")["samples"]

    def disk_full(path, **arrays):  # writes half a file, then the disk is full
        with open(path if str(path).endswith(".npz") else str(path) + ".npz", "wb") as f:
            f.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError):
        sample.main(base)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(pathlib.Path(work) / "samples_dpmpp_2m_nfe4_seed0.npz")["samples"], good)
    assert not list(pathlib.Path(work).glob("*.tmp*"))
    for argv, match in [
        (["--num", "0"], "--num must be >= 1"),
        (["--nfe", "0"], "--nfe must be >= 1"),
        (["--label", "3"], "--label 3: the model is unconditional"),
        (["--guidance", "2"], "--guidance needs --label"),
    ]:
        with pytest.raises(SystemExit, match=match):
            sample.main(["--workdir", work] + argv)


# ---- 6: one-paragraph failures ---------------------------------------------------------------------------------
def test_disk_full_during_training_is_one_paragraph_and_resumes(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the third checkpoint's write fail like a full disk."""
    work = tmp_path / "run"
    _train_in_process(work, "--set", "train.steps=20", "--set", "train.ckpt_every=10")
    size = max(p.stat().st_size for p in (work / "checkpoints").rglob("*") if p.is_file())
    limit = (
        "import resource, signal, runpy, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size // 2}, {size // 2})); "
        f"sys.argv = {_train_cmd(work, '--set', 'train.steps=30', '--set', 'train.ckpt_every=10')[1:]!r}; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    full = subprocess.run([sys.executable, "-c", limit], env=_env(), capture_output=True, text=True, timeout=600)
    assert full.returncode == 1, full.stderr[-3000:]
    err = [ln for ln in full.stderr.strip().splitlines() if ln and not ln.startswith(("train:", "note:"))]
    assert "could not write checkpoint 30" in err[-1] and "the last complete checkpoint is 20" in err[-1], full.stderr[
        -3000:
    ]
    assert "Traceback" not in full.stderr and len(err) == 1, full.stderr[-3000:]  # one paragraph, nothing else
    _train_in_process(work, "--set", "train.steps=30", "--set", "train.ckpt_every=10")  # resumes from 20
    fresh = tmp_path / "fresh"
    _train_in_process(fresh, "--set", "train.steps=30", "--set", "train.ckpt_every=10")
    assert _digest(work, 30) == _digest(fresh, 30)  # the resumed run equals an uninterrupted one, bit for bit


def test_read_only_workdir_fails_at_once(tmp_path, monkeypatch):
    import errno

    import train

    from diffjax import files

    real_open = os.open

    def read_only(path, *a, **kw):
        if str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(files.os, "open", read_only)
    t0 = time.time()
    with pytest.raises(SystemExit, match="the file system is read-only: training needs a writable --workdir"):
        train.main(["--config", CFG + ":toy-edm", "--workdir", str(tmp_path / "ro"), *SMALL, "--set", "train.steps=10"])
    assert time.time() - t0 < 30


def test_ctrl_c_saves_the_step_exits_130_and_resumes_exactly(tmp_path):
    work = tmp_path / "run"
    p = subprocess.Popen(
        _train_cmd(work, "--set", "train.steps=100000", "--set", "train.ckpt_every=1000"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (work / "metrics.jsonl").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted after step ") and "saved; rerun the same command to resume" in last, err[-2000:]
    assert "Traceback" not in err
    step = int(last.split()[3].rstrip(":"))
    assert _checkpoints(work)[-1] == step
    target = step + 10
    _train_in_process(work, "--set", f"train.steps={target}", "--set", "train.ckpt_every=1000")  # resumes
    fresh = tmp_path / "fresh"
    _train_in_process(fresh, "--set", f"train.steps={target}", "--set", "train.ckpt_every=1000")
    assert _digest(work, target) == _digest(fresh, target)


def test_foreign_truncated_or_mistyped_configs_are_one_line(tmp_path, capsys):
    import evaluate
    import sample
    import train

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train.main(["--config", CFG + ":toy-edm", "--workdir", a, *SMALL, "--set", "train.steps=10"])
    train.main(["--config", CFG + ":toy-vp", "--workdir", b, *SMALL, "--set", "train.steps=10"])
    cfg_b = (pathlib.Path(b) / "config.json").read_text()
    (pathlib.Path(b) / "config.json").write_text((pathlib.Path(a) / "config.json").read_text())  # another model's
    for script in (sample, evaluate):
        with pytest.raises(SystemExit, match="does not describe the run's checkpoints.*another --workdir"):
            script.main(["--workdir", b, "--num", "4"])
    (pathlib.Path(b) / "config.json").write_text(cfg_b[: len(cfg_b) // 2])  # truncated
    with pytest.raises(SystemExit, match="config.json is not valid JSON"):
        sample.main(["--workdir", b, "--num", "4"])
    with pytest.raises(SystemExit, match="config.json is not valid JSON.*damaged"):
        train.main(["--config", CFG + ":toy-vp", "--workdir", b])
    with pytest.raises(SystemExit, match="config file 'experiments/configs/defualt.py' does not exist"):
        train.main(["--config", "experiments/configs/defualt.py:toy-edm", "--workdir", str(tmp_path / "c")])
    capsys.readouterr()
    train.main(
        [
            "--config",
            CFG,
            "--workdir",
            str(tmp_path / "d"),
            *SMALL,
            "--set",
            "train.steps=1",
            "--set",
            "train.log_every=1",
        ]
    )
    err = capsys.readouterr().err
    assert "no :NAME after" in err and "its default config 'toy-edm'" in err
