"""Published checkpoints: the ports equal the originals (golden fixtures made by experiments/pretrained_crosscheck.py
from diffusers, EDM's and score_sde's own code with random weights), the loaders refuse bad files precisely, EDM's
pickles are read without running code, and the loaded models sample and fit learned solvers."""

import json
import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.models import pretrained as P
from diffjax.models.pretrained import score_sde, unpickle

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained")
TOL = 1e-5


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def io_of(name):
    with np.load(os.path.join(FIX, name)) as f:
        return {k: f[k] for k in f.files}


# ---- equal to the originals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["diffusers_ddpm", "diffusers_cond_vpred_cosine", "diffusers_ncsnpp_ve"])
def test_diffusers_port_equals_diffusers(folder):
    io = io_of(os.path.join(folder, "io.npz"))
    pm = dj.models.load_pretrained(os.path.join(FIX, folder))
    assert rel(pm.network_output(io["x"], io["timesteps"], io.get("labels")), io["out"]) < TOL
    assert pm.info["format"] == "diffusers" and len(pm.info["digest"]) == 64


@pytest.mark.parametrize(
    "name", ["edm_vp_ddpmpp", "edm_ve_ncsnpp", "edm_edm_ncsnpp_skip_cond", "edm_iddpm_adm", "edm_edm_adm_cond"]
)
def test_edm_port_equals_edm(name):
    io = io_of(name + ".io.npz")
    pm = dj.models.load_pretrained(os.path.join(FIX, name + ".pkl"))
    labels = io.get("labels")
    assert rel(pm.network_output(io["net_x"], io["net_c"], labels), io["net_out"]) < TOL  # the network alone
    assert rel(pm.denoise(io["x"], io["sigma"], labels), io["denoised"]) < TOL  # with the preconditioning


@pytest.mark.parametrize("name", ["score_sde_vp_ddpmpp", "score_sde_ve_ncsnpp", "score_sde_ve_ncsnpp_skip"])
def test_score_sde_port_equals_score_sde(name):
    io = io_of(name + ".io.npz")
    pm = dj.models.load_pretrained(
        os.path.join(FIX, name + ".msgpack"), config=os.path.join(FIX, name + ".config.json")
    )
    assert rel(score_sde.original_output(pm, io["x"], io["cond"]), io["out"]) < TOL
    assert pm.info["config"]["name"] == str(io["config"])


def test_score_sde_model_is_the_originals_score():
    """diffjax's [−1, 1] model of a VE checkpoint: s(y, t) = ½ s_[0,1]((y + 1)/2, σ(t)/2) of the original network."""
    io = io_of("score_sde_ve_ncsnpp.io.npz")
    pm = dj.models.load_pretrained(
        os.path.join(FIX, "score_sde_ve_ncsnpp.msgpack"), config=os.path.join(FIX, "score_sde_ve_ncsnpp.config.json")
    )
    t = jnp.array([0.3, 0.6, 0.9])
    sigma01 = np.asarray(pm.sde.sigma(t)) / 2
    y = jnp.asarray(2 * io["x"] - 1)
    ours = np.asarray(pm.model().score(y, t))
    original = 0.5 * score_sde.original_output(pm, io["x"], sigma01)
    assert rel(ours, original) < 1e-5
    assert pm.sde.sigma_min == pytest.approx(0.02) and pm.sde.sigma_max == pytest.approx(100.0)


def test_edm_conversion_round_trip(tmp_path):
    src = os.path.join(FIX, "edm_edm_ncsnpp_skip_cond.pkl")
    npz, js = P.convert(src, str(tmp_path / "net"))
    from flax import nnx

    a, b = dj.models.load_pretrained(src), dj.models.load_pretrained(js)
    for u, v in zip(jax.tree.leaves(nnx.state(a.net)), jax.tree.leaves(nnx.state(b.net)), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert a.conditioning == b.conditioning
    assert b.info["spec"]["source"]["digest"] == P.file_digest(src)
    assert a.sde == b.sde == dj.EDM(sigma_min=0.002, sigma_max=80.0)
    assert a.info["dropped"] == [] and dj.models.load_pretrained(os.path.join(FIX, "edm_vp_ddpmpp.pkl")).info[
        "dropped"
    ] == ["model.map_augment"]


# ---- the restricted unpickler ----------------------------------------------------------------------------------
class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_refuses_code(tmp_path):
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"ema": _RunsCode()}))
    with pytest.raises(unpickle.UnsafePickleError, match="refused to load (posix|os|nt).system"):
        dj.models.load_pretrained(str(bad))


def _persistence_pickle(obj_meta, wrap_in_dict):
    """A pickle as EDM's persistence writes one: a call of torch_utils.persistence._reconstruct_persistent_obj(meta)."""
    import sys
    import types

    fake = types.ModuleType("torch_utils.persistence")
    fake._reconstruct_persistent_obj = lambda meta: None
    fake._reconstruct_persistent_obj.__module__, fake._reconstruct_persistent_obj.__qualname__ = (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
    )

    class Record:
        def __reduce__(self):
            return (fake._reconstruct_persistent_obj, (obj_meta,))

    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = types.ModuleType("torch_utils"), fake
    try:
        return pickle.dumps({"ema": Record()} if wrap_in_dict else Record())
    finally:
        del sys.modules["torch_utils"], sys.modules["torch_utils.persistence"]


def test_unpickler_never_executes_persistence_source(tmp_path):
    """EDM's persistence records carry module source that plain pickle would exec; here it stays text."""
    marker = tmp_path / "executed"
    meta = {
        "type": "class",
        "version": 6,
        "class_name": "EDMPrecond",
        "state": {"_modules": {}},
        "module_src": f"open({str(marker)!r}, 'w').write('x')\nclass EDMPrecond: pass\n",
    }
    path = tmp_path / "net.pkl"
    path.write_bytes(_persistence_pickle(meta, wrap_in_dict=False))
    record = unpickle.load(str(path))
    assert isinstance(record, unpickle.Persistent) and record.class_name == "EDMPrecond" and record.source_chars > 0
    with pytest.raises(ValueError, match="expected EDM's dict"):
        dj.models.load_pretrained(str(path))
    path.write_bytes(_persistence_pickle(meta, wrap_in_dict=True))
    with pytest.raises(ValueError, match="EDMPrecond holds no 'model' network"):
        dj.models.load_pretrained(str(path))
    assert not marker.exists()


def test_truncated_and_foreign_pickles(tmp_path):
    src = open(os.path.join(FIX, "edm_vp_ddpmpp.pkl"), "rb").read()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(pickle.UnpicklingError, match="not a readable network pickle"):
        dj.models.load_pretrained(str(cut))
    zipped = tmp_path / "torch_save.pkl"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    with pytest.raises(pickle.UnpicklingError, match="zip archive"):
        dj.models.load_pretrained(str(zipped))


# ---- precise errors, nothing half-loaded ----------------------------------------------------------------------
def _copy_folder(tmp_path, name="diffusers_ddpm"):
    dst = tmp_path / name
    shutil.copytree(os.path.join(FIX, name), dst)
    return dst


def test_diffusers_folder_errors(tmp_path):
    d = _copy_folder(tmp_path)
    os.remove(d / "scheduler_config.json")
    with pytest.raises(FileNotFoundError, match="scheduler_config.json is missing"):
        dj.models.load_pretrained(str(d))
    d = _copy_folder(tmp_path / "b")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, cross_attention_dim=768)))
    with pytest.raises(ValueError, match=r"unknown UNet2DModel field\(s\) \['cross_attention_dim'\]"):
        dj.models.load_pretrained(str(d))
    (d / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[8, 16, 32])))
    with pytest.raises(ValueError, match=r"has shape .* the network expects"):
        dj.models.load_pretrained(str(d))
    (d / "config.json").write_text(
        json.dumps(dict(cfg, up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]))
    )
    with pytest.raises(ValueError, match="up_block_types"):
        dj.models.load_pretrained(str(d))
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        dj.models.load_pretrained(str(d))
    d = _copy_folder(tmp_path / "c")
    sched = json.loads((d / "scheduler_config.json").read_text())
    (d / "scheduler_config.json").write_text(json.dumps(dict(sched, prediction_type="flow")))
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        dj.models.load_pretrained(str(d))
    (d / "scheduler_config.json").write_text(json.dumps(dict(sched, _class_name="FlowMatchEulerDiscreteScheduler")))
    with pytest.raises(ValueError, match="scheduler 'FlowMatchEulerDiscreteScheduler' is not supported"):
        dj.models.load_pretrained(str(d))
    d = _copy_folder(tmp_path / "d")
    w = d / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        dj.models.load_pretrained(str(d))
    os.remove(w)
    (d / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="torch pickle"):
        dj.models.load_pretrained(str(d))


def test_mismatched_or_damaged_weights_are_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    d = _copy_folder(tmp_path)
    w = str(d / "diffusion_pytorch_model.safetensors")
    sd = load_file(w)
    key = "conv_in.weight"
    save_file({k: v for k, v in sd.items() if k != key}, w)
    with pytest.raises(ValueError, match=r"1 network parameter\(s\) have no entry .*conv_in.kernel"):
        dj.models.load_pretrained(str(d))
    bad = dict(sd)
    bad[key] = np.full_like(sd[key], np.nan)
    save_file(bad, w)
    with pytest.raises(ValueError, match="'conv_in.weight' contains non-finite values"):
        dj.models.load_pretrained(str(d))
    save_file(dict(sd, extra_layer__weight=np.zeros(3, np.float32)), w)
    with pytest.raises(ValueError, match="'extra_layer__weight' has no place in the network"):
        dj.models.load_pretrained(str(d))


def test_score_sde_errors(tmp_path):
    path = os.path.join(FIX, "score_sde_ve_ncsnpp.msgpack")
    with pytest.raises(ValueError, match="unknown score_sde config 've/cifar10_ncsnpp_contnuous' \\(did you mean"):
        dj.models.load_pretrained(path, config="ve/cifar10_ncsnpp_contnuous")
    with pytest.raises(ValueError, match="of config ve/cifar10_ncsnpp_continuous are missing from the checkpoint"):
        dj.models.load_pretrained(path, config="ve/cifar10_ncsnpp_continuous")  # the fixture is a small variant
    with pytest.raises(ValueError, match="discrete-time VE"):
        dj.models.load_pretrained(path, config="ve/cifar10_ncsnpp")
    bad = tmp_path / "variant.json"
    bad.write_text(json.dumps({"base": "ve/cifar10_ncsnpp_continuous", "channels": 8}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['channels'\]"):
        dj.models.load_pretrained(path, config=str(bad))
    junk = tmp_path / "ckpt"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not a Flax msgpack checkpoint"):
        dj.models.load_pretrained(str(junk), config="ve/cifar10_ncsnpp_continuous")


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected a diffusers folder"):
        dj.models.load_pretrained(str(tmp_path / "nothing"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model format"):
        dj.models.load_pretrained(str(tmp_path / "weights.bin"))
    with pytest.raises(ValueError, match="without config.json"):
        dj.models.load_pretrained(str(tmp_path))


def test_labels_are_checked():
    cond = dj.models.load_pretrained(os.path.join(FIX, "diffusers_cond_vpred_cosine"))
    with pytest.raises(ValueError, match="class-conditional \\(10 classes\\): pass labels"):
        cond.model()
    with pytest.raises(ValueError, match="labels must lie in 0…9"):
        cond.model(np.array([3, 10]))
    uncond = dj.models.load_pretrained(os.path.join(FIX, "diffusers_ddpm"))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.model(np.array([1]))


# ---- the discrete schedule and the conditioning maps ----------------------------------------------------------
def test_discrete_vp_interpolates_the_trained_steps(x64):
    sde = dj.diffusions.DiscreteVP.from_schedule("linear", 1e-4, 0.02, 1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)
    t = (np.arange(1000) + 1) / 1000
    np.testing.assert_allclose(np.asarray(sde.alpha(t)) ** 2, abar, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(sde.timestep(t)), np.arange(1000), atol=1e-9)
    tt = np.array([2e-4, 0.0015, 0.37, 0.9991])  # between and below the grid points
    np.testing.assert_allclose(np.asarray(sde.t_of_rho(sde.rho(tt))), tt, rtol=1e-10)
    # cosine schedule: ᾱ(s) = cos²((s + 0.008)/1.008 · π/2) up to the β cap
    cos = dj.diffusions.DiscreteVP.from_schedule("squaredcos_cap_v2", num_train_timesteps=100)
    f = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(
        np.asarray(cos.alpha(np.arange(1, 100) / 100)) ** 2, f(np.arange(1, 100) / 100) / f(0), rtol=1e-10
    )
    with pytest.raises(ValueError, match="decrease strictly"):
        dj.diffusions.DiscreteVP((0.5, 0.6))


def test_ddim_on_the_trained_steps_is_ddim(x64):
    """diffjax's DDIM on a DiscreteVP grid of trained steps equals the DDIM recursion written with ᾱ_i directly."""
    sde = dj.diffusions.DiscreteVP.from_schedule()
    abar = np.asarray(sde.alphas_cumprod)
    steps = np.array([999, 749, 499, 249, 99, 0])
    eps = lambda y, t: jnp.sin(y) * 0.3 + 0.1 * jnp.reshape(t, (-1,) + (1,) * (y.ndim - 1))  # any smooth ε-model
    y0 = jax.random.normal(jax.random.key(0), (5, 3))
    ours = dj.sample(
        jax.random.key(1), sde, eps, "ddim", nfe=len(steps) - 1, init=y0, grid=(steps + 1) / 1000.0, kind="eps"
    )
    y = np.asarray(y0)
    for i, j in zip(steps[:-1], steps[1:]):
        e = np.asarray(eps(jnp.asarray(y), jnp.full((5,), (i + 1) / 1000.0)))
        x0 = (y - np.sqrt(1 - abar[i]) * e) / np.sqrt(abar[i])
        y = np.sqrt(abar[j]) * x0 + np.sqrt(1 - abar[j]) * e
    np.testing.assert_allclose(np.asarray(ours), y, rtol=1e-10, atol=1e-12)


def test_edm_denoiser_moves_to_any_diffusion():
    """An EDM denoiser as a model of VP: x̂0(y, t) = D(y/α, σ/α), the same as on EDM at σ = ρ(t)."""
    pm = dj.models.load_pretrained(os.path.join(FIX, "edm_vp_ddpmpp.pkl"))
    vp = pm.with_diffusion(dj.VP())
    y = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    t = jnp.array([0.2, 0.7])
    a, s = np.asarray(dj.VP().alpha(t)), np.asarray(dj.VP().rho(t))
    direct = pm.denoise(np.asarray(y) / a[:, None, None, None], s)
    # float32 rounding of y/α (α(0.7) = 0.085) and of differently fused programs: agreement to ~1e-4
    np.testing.assert_allclose(np.asarray(vp.model().x0(y, t)), direct, rtol=1e-3, atol=1e-3)
    diffusers = dj.models.load_pretrained(os.path.join(FIX, "diffusers_ddpm"))
    with pytest.raises(ValueError, match="tied to their diffusion"):
        diffusers.with_diffusion(dj.VP())


# ---- every solver and learn on a loaded model ----------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["ddim", "unipc", "edm_heun", "euler_maruyama"])
def test_solvers_sample_a_diffusers_model(solver):
    pm = dj.models.load_pretrained(os.path.join(FIX, "diffusers_ddpm"))
    x = dj.sample(jax.random.key(0), pm.sde, pm.model(), solver, nfe=6, shape=(2,) + pm.data_shape)
    assert x.shape == (2, 16, 16, 3) and np.all(np.isfinite(np.asarray(x)))


# ---- the entry scripts on published checkpoints -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["diffusers_ddpm"])
def test_scripts_sample_learn_evaluate_a_checkpoint(tmp_path, name, capsys):
    """sample.py → learn_solver.py → sample.py with the learned solver → evaluate.py --sweep, on a copy of a
    checkpoint (outputs beside it in <name>_diffjax/); bad use exits with its reason. (The EDM pickle goes through
    learn_solver.py and evaluate.py in the reproduction recipe's test, as separate processes.)"""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
    import evaluate
    import learn_solver
    import sample

    src = os.path.join(FIX, name)
    ckpt = tmp_path / name
    (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, ckpt)
    out = tmp_path / (os.path.splitext(name)[0] + "_diffjax")
    sample.main(["--pretrained", str(ckpt), "--solver", "unipc", "--nfe", "5", "--num", "3"])
    assert np.load(out / "samples_unipc_nfe5_seed0.npz")["samples"].shape == (3, 16, 16, 3)
    learn_solver.main(
        [
            "--pretrained",
            str(ckpt),
            "--solver",
            "dpmpp_2m",
            "--nfe",
            "4",
            "--teacher",
            "dpmpp_2m:10",
            "--num-fit",
            "4",
            "--num-heldout",
            "4",
            "--steps",
            "2",
            "--init-grid",
            "base",
        ]
    )
    fitted = out / "solvers" / "dpmpp_2m_nfe4.json"
    assert json.loads(fitted.read_text())["info"]["model"].startswith("sha")
    sample.main(["--pretrained", str(ckpt), "--solver", str(fitted), "--num", "2"])
    assert (out / "samples_learned_dpmpp_2m_nfe4_nfe4_seed0.png").exists()
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3)).astype(np.uint8))
    evaluate.main(
        [
            "--pretrained",
            str(ckpt),
            "--ref",
            str(ref),
            "--sweep",
            "--solvers",
            f"ddim,{fitted}",
            "--nfes",
            "4",
            "--num",
            "8",
            "--chunk",
            "4",
            "--quiet",
        ]
    )
    rows = [json.loads(line) for line in open(out / "eval" / "results.jsonl")]
    assert {r["solver"] for r in rows} == {"ddim", "learned_dpmpp_2m_nfe4"} and all(r["fd_pixels"] > 0 for r in rows)
    assert (out / "eval" / "sweep.md").exists()
    for argv, match in [
        (["--pretrained", str(tmp_path / "missing.pkl")], "does not exist"),
        (["--pretrained", str(ckpt), "--raw"], "--raw is for trained runs"),
        (["--pretrained", str(ckpt), "--label", "3"], "unconditional"),
    ]:
        with pytest.raises(SystemExit, match=match):
            sample.main(argv + ["--num", "2"])
    with pytest.raises(SystemExit, match="give --ref"):
        evaluate.main(["--pretrained", str(ckpt), "--num", "4"])


RECIPE_FIXTURES = {  # the variables of each docs/GUIDE.md recipe, set to small stand-ins of the same formats
    "edm-cifar10": dict(
        NET="edm_vp_ddpmpp.pkl",
        REF="ref.npz",
        WEIGHTS="no_inception_here.npz",
        NUM="4",
        NFE="3",
        SOLVERS="dpmpp_3m",
        NFES="3",
        FIT="4",
        STEPS="2",
        INIT="base",
    ),
    "score-sde-scire": dict(
        CKPT="score_sde_ve_ncsnpp.msgpack",
        CONFIG="score_sde_ve_ncsnpp.config.json",
        REF="ref.npz",
        WEIGHTS="no_inception_here.npz",
        NUM="4",
        SOLVERS="scire_2m",
        NFES="6",
    ),
}


def _recipes():
    import re

    guide = open(os.path.join(os.path.dirname(__file__), "..", "docs", "GUIDE.md")).read()
    return dict(re.findall(r"```bash\n# recipe: (\S+)\n(.*?)```", guide, flags=re.S))


def test_every_recipe_is_tested():
    assert set(_recipes()) == set(RECIPE_FIXTURES)


@pytest.mark.parametrize("name", sorted(RECIPE_FIXTURES))
def test_reproduction_recipe_runs(tmp_path, name):
    """The recipe's commands, unchanged, in bash; only the variables of its assignment lines are set to fixtures."""
    import subprocess
    import sys

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    lines = _recipes()[name].splitlines()
    assigned = [ln for ln in lines if ln and "=" in ln.split()[0] and not ln.startswith("python")]
    commands = "\n".join(ln for ln in lines if ln not in assigned)
    names = {w.split("=")[0] for ln in assigned for w in ln.split()}
    assert names == set(RECIPE_FIXTURES[name]), names
    for f in os.listdir(FIX):
        if f.startswith(RECIPE_FIXTURES[name].get("NET", RECIPE_FIXTURES[name].get("CKPT", "")).split(".")[0]):
            shutil.copy(os.path.join(FIX, f), tmp_path / f)
    np.savez(tmp_path / "ref.npz", images=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.uint8))
    (tmp_path / "experiments").symlink_to(os.path.join(root, "experiments"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # `python` is this interpreter
    (bindir / "python").chmod(0o755)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "PYTHONPATH": root,
        "JAX_PLATFORMS": "cpu",
        "MPLBACKEND": "Agg",
        **{k: v for k, v in os.environ.items() if k == "JAX_DISABLE_MOST_OPTIMIZATIONS"},
        **RECIPE_FIXTURES[name],
    }
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-3000:]
    assert "FID skipped" in res.stderr  # no Inception weights here: pixel metrics only
    out = next(p for p in tmp_path.iterdir() if p.name.endswith("_diffjax"))
    rows = [json.loads(line) for line in open(out / "eval" / "results.jsonl")]
    assert rows and all(r["fd_pixels"] is not None for r in rows)
