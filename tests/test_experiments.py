"""The demo entry script runs end to end and writes its picture and table."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _script_env():
    """A bare environment for the scripts, with the suite's compiler settings (tests/conftest.py)."""
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    return env | {k: v for k, v in os.environ.items() if k == "JAX_DISABLE_MOST_OPTIMIZATIONS"}


def test_demo_writes_picture_and_table(tmp_path):
    out = tmp_path / "demo"
    env = _script_env() | {"JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}  # the main job as users run it: fully optimised
    res = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "demo.py"), "--out", str(out), "--num", "200", "--nfe", "6"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    table = (out / "demo_table.md").read_text()
    assert "| dpmpp_2m | 6 |" in table and "unipc" in table
    png = (out / "demo_samples.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def _run(script, *args, timeout=600):
    env = _script_env()
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_train_resume_and_sample_scripts(tmp_path):
    """train.py in a process of its own, then (in this process, to spare interpreter starts) resumed by train.py,
    sampled by sample.py, a solver fitted by learn_solver.py and sampled by path; mistakes exit with their reason."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import learn_solver
    import sample
    import train

    cfg = str(ROOT / "experiments" / "configs" / "default.py")
    work = str(tmp_path / "run")
    small = ["--set", "train.log_every=10", "--set", "train.ckpt_every=10", "--set", "model.width=32"]
    res = _run("train.py", "--config", cfg + ":toy-fdm-edm", "--workdir", work, "--set", "train.steps=20", *small)
    assert res.returncode == 0, res.stderr[-2000:]
    train.main(["--config", cfg + ":toy-fdm-edm", "--workdir", work, "--set", "train.steps=30", *small])
    steps = [json.loads(l)["step"] for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert steps == [10, 20, 30]  # the second call resumed at 20
    for solver, nfe in [("edm_heun", 9), ("euler_maruyama", 10)]:
        sample.main(["--workdir", work, "--solver", solver, "--nfe", str(nfe), "--num", "50"])
        x = np.load(tmp_path / "run" / f"samples_{solver}_nfe{nfe}_seed0.npz")["samples"]
        assert x.shape == (50, 2) and np.all(np.isfinite(x))
    # a learned solver fitted to the run, stored in it, then sampled by path
    learn_solver.main(
        [
            "--workdir",
            work,
            "--solver",
            "ipndm",
            "--nfe",
            "4",
            "--num-fit",
            "32",
            "--num-heldout",
            "32",
            "--steps",
            "10",
            "--teacher",
            "unipc:40",
        ]
    )
    learned = tmp_path / "run" / "solvers" / "ipndm_nfe4.json"
    info = json.load(open(learned))["info"]
    assert info["heldout_rmse"] <= info["heldout_rmse_base"] and info["checkpoint_step"] == 30
    sample.main(["--workdir", work, "--solver", str(learned), "--num", "50"])
    x = np.load(tmp_path / "run" / "samples_learned_ipndm_nfe4_nfe4_seed0.npz")["samples"]
    assert x.shape == (50, 2) and np.all(np.isfinite(x))
    with pytest.raises(SystemExit, match="fitted for nfe=4"):
        sample.main(["--workdir", work, "--solver", str(learned), "--nfe", "6", "--num", "50"])
    with pytest.raises(SystemExit, match="--teacher must be"):  # a family default passes the name check
        learn_solver.main(["--workdir", work, "--solver", "unipc", "--nfe", "4", "--teacher", "unipc"])
    with pytest.raises(SystemExit, match="traceable"):
        learn_solver.main(["--workdir", work, "--solver", "pc", "--nfe", "4"])
    with pytest.raises(SystemExit, match="no run"):
        sample.main(["--workdir", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="unknown diffusion"):
        train.main(["--config", cfg + ":toy-warp", "--workdir", str(tmp_path / "bad")])


def test_image_configs_build(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    import train

    cfg = str(ROOT / "experiments" / "configs" / "default.py")
    tiny = [
        "--set",
        "train.steps=1",
        "--set",
        "train.batch_size=4",
        "--set",
        "model.channels=4",
        "--set",
        "model.channel_mult=[1]",
        "--set",
        "model.attn_resolutions=[]",
        "--set",
        "data.size=8",
        "--set",
        "train.log_every=1",
        "--set",
        "train.eval_samples=16",
    ]
    for spec in ("digits-cld", "digits-blur"):
        train.main(["--config", f"{cfg}:{spec}", "--workdir", str(tmp_path / spec), *tiny])
        assert [json.loads(line)["step"] for line in open(tmp_path / spec / "metrics.jsonl")] == [1]
    with pytest.raises(SystemExit, match="not prepared|tensorflow-datasets"):
        train.main(
            [
                "--config",
                f"{cfg}:cifar10-edm",
                "--workdir",
                str(tmp_path / "c"),
                "--set",
                "data.data_dir=" + str(tmp_path),
            ]
        )


def test_evaluate_script_fid_sweep_and_pixel_fallback(tmp_path, monkeypatch, capsys):
    """A tiny flow-matching digits run: evaluate.py sweeps 2 solvers (FID with random Inception weights, pixel
    metrics), writes rows, a table and a plot; a rerun replaces its row; without weights it says FID was skipped
    and still scores pixels; a bad solver name fails before sampling."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import evaluate
    import train

    from diffjax import inception

    cfg = str(ROOT / "experiments" / "configs" / "default.py")
    work = str(tmp_path / "run")
    train.main(
        [
            "--config",
            cfg + ":digits-flow",
            "--workdir",
            work,
            "--set",
            "train.steps=20",
            "--set",
            "model.kind=mlp",
            "--set",
            "model.width=32",
            "--set",
            "data.size=8",
            "--set",
            "train.log_every=10",
            "--set",
            "train.ckpt_every=20",
            "--set",
            "train.eval_samples=0",
        ]
    )
    weights = str(tmp_path / "inception_random.npz")
    np.savez(weights, **inception.random_weights(0))
    args = ["--workdir", work, "--num", "8", "--chunk", "4", "--feature-batch", "4", "--quiet"]
    # in-process (the reproduction recipe's test runs evaluate.py as its own process): Inception compiles once
    evaluate.main([*args, "--sweep", "--solvers", "edm_heun,dpmpp_2m", "--nfes", "4", "--weights", weights])
    rows = [json.loads(line) for line in open(tmp_path / "run" / "eval" / "results.jsonl")]
    assert [(r["solver"], r["nfe"]) for r in rows] == [("edm_heun", 4), ("dpmpp_2m", 4)]
    assert all(np.isfinite(r["fid"]) and r["fid"] >= 0 and np.isfinite(r["fd_pixels"]) for r in rows)
    assert all(0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["pr_num"] == 8 and r["pr_k"] == 3 for r in rows)
    sweep = open(tmp_path / "run" / "eval" / "sweep.md").read()
    assert "| edm_heun |" in sweep and "precision / recall (k = 3, 8 samples)" in sweep
    assert (tmp_path / "run" / "eval" / "reference_inception_features_n8.npz").exists()
    assert (tmp_path / "run" / "eval" / "sweep.png").exists()
    heun = rows[0]
    monkeypatch.delenv("DIFFJAX_INCEPTION", raising=False)
    capsys.readouterr()
    evaluate.main([*args, "--solver", "edm_heun", "--nfe", "4"])
    err = capsys.readouterr().err
    assert "FID skipped" in err and "never downloads" in err, err[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "eval" / "results.jsonl")]
    assert len(rows) == 2 and rows[-1]["solver"] == "edm_heun" and rows[-1]["fid"] is None
    assert abs(rows[-1]["fd_pixels"] - heun["fd_pixels"]) < 1e-9  # the same samples, read back from disk
    # main() resolves every name before the first sample is drawn
    evaluate.main([*args, "--weights", weights, "--solver", "ddim", "--nfe", "4", "--num", "3", "--chunk", "3"])
    assert "precision/recall skipped: 3 samples" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--pr-num must be 0 \\(off\\) or > --pr-k"):
        evaluate.main([*args, "--pr-num", "3"])
    with pytest.raises(SystemExit, match="unknown solver 'hune'"):
        evaluate.resolve_solver("hune")
    assert evaluate.resolve_solver("unipc")[1] == "unipc"  # a family default is a solver name
