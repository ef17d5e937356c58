"""Models, preconditioning, losses, trainer, checkpoints."""

import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.diffusions.recipes import edm_preconditioning, fdm_preconditioning
from diffjax.models import MLP, UNet, count_params, ddpmpp_cifar10, guided, precondition
from diffjax.training import LossConfig, TrainConfig, Trainer, diffusion_loss, fdm_weight_cap

RING = dj.testbed.ring()
FAMILIES = [dj.VP(), dj.VE(sigma_max=5.0), dj.EDM(), dj.FDM(base="edm"), dj.FDM(base="vp"), dj.FDM(base="ve")]


def _t_of_cnoise(sde, c):
    """The inverse of each family's noise label, written out independently of the library."""
    if isinstance(sde, dj.FDM):
        if isinstance(sde.base, dj.VP):
            return c / 999.0
        return sde.t_of_rho(2 * jnp.exp(c) if isinstance(sde.base, dj.VE) else jnp.exp(4 * c))
    if isinstance(sde, dj.EDM):
        return jnp.exp(4 * c)
    if isinstance(sde, dj.VE):
        return sde.t_of_rho(2 * jnp.exp(c))
    return c / 999.0


def _oracle_net(sde, data):
    """The network F whose preconditioned output is the exact denoiser / ε of ``data``."""
    col = lambda v: v.reshape(-1, 1)

    def net(x_in, c, labels):
        t = _t_of_cnoise(sde, c)
        if isinstance(sde, dj.FDM):
            c_skip, c_out, c_in, _ = fdm_preconditioning(sde, sde.rho(t))
            xt = x_in / col(c_in)
            return (data.denoiser(sde, col(sde.alpha(t)) * xt, t) - col(c_skip) * xt) / col(c_out)
        if isinstance(sde, dj.EDM):
            c_skip, c_out, c_in, _ = edm_preconditioning(t, 0.5)
            y = x_in / col(c_in)
            return (data.denoiser(sde, y, t) - col(c_skip) * y) / col(c_out)
        if isinstance(sde, dj.VE):
            return (data.denoiser(sde, x_in, t) - x_in) / col(sde.sigma(t))
        return data.eps(sde, x_in, t)

    return net


@pytest.mark.parametrize("sde", FAMILIES, ids=lambda s: s.name + getattr(getattr(s, "base", None), "name", ""))
def test_preconditioning_recovers_the_exact_model_and_minimises_the_loss(x64, sde):
    m = precondition(sde, _oracle_net(sde, RING))
    y = jax.random.normal(jax.random.key(0), (16, 2))
    for frac in (0.3, 0.01):
        t = jnp.full((16,), frac * sde.T + sde.t_min)
        yy = sde.sigma(t)[:, None] * y + 0.5 * sde.alpha(t)[:, None]
        np.testing.assert_allclose(m.x0(yy, t), RING.denoiser(sde, yy, t), atol=1e-10)
    x0 = RING.sample(jax.random.key(1), 2048)
    cfg = LossConfig(fdm_warmup_images=0)
    exact = float(diffusion_loss(sde, _oracle_net(sde, RING), jax.random.key(2), x0, cfg=cfg))
    off = lambda x, c, l: _oracle_net(sde, RING)(x, c, l) + 0.05
    assert exact < float(diffusion_loss(sde, off, jax.random.key(2), x0, cfg=cfg))


def test_cld_parameterizations_recover_the_exact_score(x64):
    sde = dj.CLD()
    u = (jax.random.normal(jax.random.key(0), (8, 2)), jax.random.normal(jax.random.key(1), (8, 2)))
    t = jnp.full((8,), 0.3)
    exact = RING.score(sde, u, t)
    eps_net = lambda x, c, l: jnp.concatenate(RING.eps(sde, (x[:, :2], x[:, 2:]), c / 999.0), -1)
    np.testing.assert_allclose(precondition(sde, eps_net).score(u, t)[1], exact[1], atol=1e-9)
    ell, svv = sde.hsm_scales(t)
    hsm_net = lambda x, c, l: (
        -(RING.score(sde, (x[:, :2], x[:, 2:]), c / 999.0)[1] + x[:, 2:] / svv[:, None]) / ell[:, None]
    )
    np.testing.assert_allclose(precondition(sde, hsm_net, cld_param="hsm").score(u, t)[1], exact[1], atol=1e-9)
    # ℓ_t is the v-row of L⁻ᵀ: the conditional v-score −Σ⁻¹(u − mean) has v-part −ℓ z_v
    x0 = RING.sample(jax.random.key(2), 8)
    ut, z = sde.perturb(jax.random.key(3), x0, t)
    cov = sde.cov_block(t)
    mean = sde.mean(x0, t)
    dev = jnp.stack([ut[0] - mean[0], ut[1] - mean[1]], -1)
    cond = -jnp.einsum("bij,bdj->bdi", jnp.linalg.inv(cov), dev)[..., 1]
    np.testing.assert_allclose(cond, -ell[:, None] * z[1], atol=1e-9)


def test_edm_preconditioning_gives_a_unit_variance_target():
    x0 = 0.5 * jax.random.normal(jax.random.key(0), (200000,))  # data std σ_data
    for sigma in (0.01, 0.5, 5.0, 50.0):
        c_skip, c_out, _, _ = edm_preconditioning(sigma, 0.5)
        x = x0 + sigma * jax.random.normal(jax.random.key(1), x0.shape)
        assert abs(float(jnp.var((x0 - c_skip * x) / c_out)) - 1) < 0.02


def test_fdm_weight_cap_schedule():
    """The clamp 5·100^{n/W} in images; W = 0 is off. The Trainer ends it where the official recipe does within
    the learning-rate ramp (EDM-FDM: 200 × 512 of 10 M images; VP/VE-FDM: 400 × 512), counted in images."""
    assert float(fdm_weight_cap(0, 200 * 512)) == pytest.approx(5.0)
    assert float(fdm_weight_cap(100 * 512, 200 * 512)) == pytest.approx(50.0, rel=1e-5)
    assert np.isinf(float(fdm_weight_cap(200 * 512, 200 * 512))) and np.isinf(float(fdm_weight_cap(0, 0)))
    for base, w in (("edm", 200), ("vp", 400), ("ve", 400)):
        tr = _trainer(dj.FDM(base=base), steps=1)
        ramp = tr.cfg.warmup_steps * tr.cfg.batch_size
        assert tr.loss_cfg.fdm_warmup_images == pytest.approx(ramp * w * 512 / 10e6)
    assert _trainer(dj.EDM(), steps=1).loss_cfg.fdm_warmup_images == 0.0
    with pytest.raises(ValueError, match="give W in training images"):
        diffusion_loss(dj.FDM(), lambda x, c, l: x, jax.random.key(0), jnp.zeros((4, 2)))


def test_vefdm_gamma_is_the_official_one(x64):
    """VE-FDM hard-wires γ = 1 in the official network (VP/EDM use the multiplier 2): s_F at σ = 40 is
    e^{−B}(1 + B) with B = 0.1τ + ½·19.9τ², τ = (40 − 0.02)/(100 − 0.02) — about 0.515 (0.163 with γ = 2)."""
    for base, sigma, lo, hi, gamma in (
        ("ve", 40.0, 0.02, 100.0, 1.0),
        ("ve", 1.0, 0.02, 100.0, 1.0),
        ("edm", 10.0, 0.002, 80.0, 2.0),
        ("edm", 0.5, 0.002, 80.0, 2.0),
    ):
        sde = dj.FDM(base=base)
        tau = (sigma - lo) / (hi - lo)
        gb = gamma * (0.1 * tau + 0.5 * 19.9 * tau**2)
        np.testing.assert_allclose(float(sde.mean_factor(sde.t_of_rho(sigma))), np.exp(-gb) * (1 + gb), rtol=1e-12)
    assert (
        dj.FDM(base="ve").gamma == 1.0 and dj.FDM(base="vp").gamma == 2.0 and dj.FDM(base="ve", gamma=2.0).gamma == 2.0
    )
    ve = dj.FDM(base="ve")
    assert abs(float(ve.mean_factor(ve.t_of_rho(40.0))) - 0.515) < 1e-3


def test_ema_schedule_in_images_with_rampup():
    """EDM's EMA: decay 0.5^(B/h) with h = min(half-life, ramp-up × images seen); the step-based default keeps
    its 10-step warm-up."""
    src = dd.toy("ring", 1000)
    net = MLP((2,), 8, 1, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=1, batch_size=64, ema_half_life_images=6400.0, ema_rampup=0.05, progress=False)
    tr = Trainer(dj.EDM(), net, src, cfg, LossConfig())
    for step in (0, 10, 1000, 10**6):
        h = min(6400.0, 0.05 * (step + 1) * 64)
        assert float(tr.ema_decay(step)) == pytest.approx(0.5 ** (64 / h), rel=1e-5)
    plain = Trainer(dj.EDM(), net, src, TrainConfig(steps=1, ema_half_life=100.0, progress=False), LossConfig())
    assert float(plain.ema_decay(0)) == pytest.approx(0.1) and float(plain.ema_decay(10**6)) == pytest.approx(0.5**0.01)
    with pytest.raises(ValueError, match="ema_rampup >= 0"):
        TrainConfig(ema_rampup=-1.0)


def _trainer(sde, workdir=None, steps=4, width=32, loss_cfg=LossConfig(), data=None, **kw):
    cld = isinstance(sde, dj.CLD)
    out = 2 if cld and loss_cfg.cld_param == "eps" else 1
    net = MLP((2,), width, 2, in_mult=2 if cld else 1, out_mult=out, rngs=nnx.Rngs(params=0, dropout=1))
    cfg = TrainConfig(
        steps=steps,
        batch_size=64,
        lr=2e-3,
        warmup_steps=2,
        log_every=1,
        progress=False,
        ckpt_every=kw.pop("ckpt_every", 2),
        async_checkpoint=False,
        **kw,
    )
    return Trainer(sde, net, data or dd.toy("ring", 1000), cfg, loss_cfg, workdir)


@pytest.mark.parametrize(
    "sde,loss_cfg",
    [(s, LossConfig()) for s in FAMILIES]
    + [(dj.CLD(), LossConfig()), (dj.CLD(), LossConfig(cld_param="hsm")), (dj.Blur(shape=(4, 4, 1)), LossConfig())],
    ids=lambda v: (
        getattr(v, "name", "")
        + getattr(getattr(v, "base", None), "name", "")
        + (getattr(v, "cld_param", "") if isinstance(v, LossConfig) else "")
    ),
)
def test_one_train_step_per_diffusion(sde, loss_cfg):
    if isinstance(sde, dj.Blur):
        net = MLP((4, 4, 1), 16, 1, rngs=nnx.Rngs(0))
        data = dd.ArraySource(np.asarray(jax.random.uniform(jax.random.key(0), (64, 4, 4, 1), minval=-1, maxval=1)))
        tr = Trainer(sde, net, data, TrainConfig(steps=1, batch_size=8, progress=False), loss_cfg)
    else:
        tr = _trainer(sde, steps=1, loss_cfg=loss_cfg)
    before = jax.tree.map(np.asarray, tr.state["params"])
    rows = tr.train()
    assert np.isfinite(rows[-1]["loss"]) and np.isfinite(rows[-1]["eval_loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(tr.state["params"])))


def test_loss_decreases_and_the_trained_model_samples_the_ring():
    tr = _trainer(dj.EDM(), steps=600, width=64)
    tr.cfg = tr.cfg.__class__(**{**tr.cfg.__dict__, "log_every": 50})
    rows = tr.train()
    assert rows[-1]["eval_loss"] < 0.8 * rows[0]["loss"]
    x = dj.sample(jax.random.key(0), dj.EDM(), tr.model(), "edm_heun", nfe=19, shape=(500, 2))
    ref = RING.sample(jax.random.key(1), 4000)
    noise = dj.sample(jax.random.key(0), dj.EDM(), lambda y, t: -y / (t**2 + 1.0), "edm_heun", nfe=19, shape=(500, 2))
    assert dj.metrics.sliced_wasserstein(x, ref, jax.random.key(2)) < 0.5 * dj.metrics.sliced_wasserstein(
        noise, ref, jax.random.key(2)
    )


@pytest.mark.parametrize("sde", [dj.FDM(base="edm"), dj.VP()], ids=lambda s: s.name)
def test_resume_is_bit_exact(tmp_path, sde):
    full = _trainer(sde, str(tmp_path / "full"), steps=6)
    full.train()
    part = _trainer(sde, str(tmp_path / "part"), steps=6)
    part.train(steps=3)  # "interrupted" after the step-2 checkpoint and a final one at 3
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "3")  # lose the last one: resume from step 2
    resumed = _trainer(sde, str(tmp_path / "part"), steps=6)
    assert resumed.restore() == 2
    resumed.train()
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = open(tmp_path / "full" / "metrics.jsonl").read().splitlines()
    assert len(lines) == 6 and os.path.exists(tmp_path / "full" / "metrics.csv")


def _tensorboard_scalars(folder):
    """{tag: [(step, value)]} from TensorBoard event files (TFRecord framing: u64 length, u32 crc, data, u32 crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(pathlib.Path(folder).glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            n = struct.unpack("<Q", data[i : i + 8])[0]
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_evaluation_samples_saves_a_grid_and_logs_to_tensorboard(tmp_path):
    tr = _trainer(dj.EDM(), str(tmp_path), steps=2, eval_samples=64, eval_nfe=5, tensorboard=True)
    rows = tr.train()
    assert np.isfinite(rows[-1]["eval_sliced_w2"]) and (tmp_path / "samples_step0000002.png").exists()
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["loss"]] == [1, 2]
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [r["loss"] for r in rows], rtol=1e-6)
    np.testing.assert_allclose(scalars["eval_sliced_w2"][-1][1], rows[-1]["eval_sliced_w2"], rtol=1e-6)
    with pytest.raises(ValueError, match="give a workdir"):
        _trainer(dj.EDM(), None, steps=2, tensorboard=True)


def test_checkpoint_errors(tmp_path):
    tr = _trainer(dj.EDM(), str(tmp_path), steps=2)
    tr.train()
    with pytest.raises(ValueError, match="written for another model"):
        _trainer(dj.EDM(), str(tmp_path), steps=4, width=16).train()
    with pytest.raises(ValueError, match="written for another model"):
        _trainer(dj.VP(), str(tmp_path), steps=4).train()
    for root, _, files in os.walk(tmp_path / "checkpoints" / "2"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    with pytest.raises(RuntimeError, match="cannot be read"):
        _trainer(dj.EDM(), str(tmp_path), steps=4).train()


def test_bad_training_config():
    with pytest.raises(ValueError, match="steps and batch_size"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="divisible"):
        Trainer(
            dj.EDM(), MLP((2,), 8, 1, rngs=nnx.Rngs(0)), dd.toy("ring", 100), TrainConfig(batch_size=3), LossConfig()
        ) if jax.device_count() > 1 else dd.toy("ring", 100).batch(0, 3, 0, 2)


def test_classifier_free_guidance():
    net = MLP((2,), 16, 1, num_classes=3, rngs=nnx.Rngs(0))
    labels = jnp.array([0, 1, 2, 1])
    y, t = jax.random.normal(jax.random.key(0), (4, 2)), jnp.full((4,), 0.5)
    sde = dj.VP()
    cond = precondition(sde, net, labels)
    np.testing.assert_allclose(guided(sde, net, labels, 0.0, 3).eps(y, t), cond.eps(y, t), atol=1e-6)
    uncond = precondition(sde, net, jnp.full((4,), 3))
    w = 2.0
    np.testing.assert_allclose(
        guided(sde, net, labels, w, 3).eps(y, t), (1 + w) * cond.eps(y, t) - w * uncond.eps(y, t), atol=1e-5
    )
    src = dd.digits(8)
    x0, lab = src.batch(0, 32)
    l_drop = diffusion_loss(
        sde,
        MLP((8, 8, 1), 16, 1, num_classes=10, rngs=nnx.Rngs(0)),
        jax.random.key(0),
        jnp.asarray(x0),
        jnp.asarray(lab),
        cfg=LossConfig(label_dropout=0.5, num_classes=10),
    )
    assert np.isfinite(float(l_drop))


def test_unet_sizes():
    assert abs(count_params(nnx.eval_shape(lambda: ddpmpp_cifar10())) - 55_733_891) / 55_733_891 < 0.01
    # one small configuration (classes, attention at 4×4, dropout) in float32 and bfloat16 with the same parameters
    small = UNet((8, 8, 1), 16, (1, 2), 1, (4,), num_classes=10, dropout=0.5, rngs=nnx.Rngs(0))
    half = UNet((8, 8, 1), 16, (1, 2), 1, (4,), num_classes=10, dropout=0.5, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x, c, y = jnp.ones((2, 8, 8, 1)), jnp.ones(2), jnp.array([1, 2])

    @nnx.jit  # one compilation for the three calls (eager calls dispatch every layer's ops one by one)
    def outputs(small, half, key):
        return small(x, c, y), small(x, c, y, dropout_key=key), half(x, c, y)

    o32, dropped, o16 = outputs(small, half, jax.random.key(0))
    assert o32.shape == (2, 8, 8, 1) and 5e4 < count_params(small) < 1e6
    np.testing.assert_array_equal(outputs(small, half, jax.random.key(0))[0], o32)  # no hidden state without a key
    assert not np.allclose(dropped, o32)
    assert o16.dtype == jnp.float32 and float(jnp.max(jnp.abs(o16 - o32))) < 0.05 * float(jnp.max(jnp.abs(o32))) + 1e-2
    with pytest.raises(ValueError, match="divisible"):
        UNet((10, 10, 1), 8, (1, 2, 2), rngs=nnx.Rngs(0))


# ---- data ----------------------------------------------------------------------------------------
def test_sources_are_deterministic_sharded_and_scaled():
    for name in dd.toy_names():
        src = dd.toy(name, 500)
        assert src.x.shape == (500, 2) and np.all(np.abs(src.x) < 5)
    src = dd.digits(16, flip=True)
    x, y = src.batch(3, 10)
    assert x.shape == (10, 16, 16, 1) and x.min() >= -1 and x.max() <= 1 and y.shape == (10,)
    np.testing.assert_array_equal(src.batch(3, 10)[0], x)
    halves = [src.batch(3, 10, i, 2)[0] for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), x)
    seen = np.concatenate([dd.digits(8).batch(i, 100)[1] for i in range(17)])  # one epoch covers every example
    assert len(seen) == 1700
    with pytest.raises(ValueError, match="unknown toy"):
        dd.toy("spiral")
    with pytest.raises(ValueError, match="non-finite"):
        dd.ArraySource(np.array([[np.nan, 0.0]]))


def test_tfds_fails_clearly_and_reads_a_prepared_builder(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        dd.tfds_source("mnist")
    tfds = pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="not prepared"):
        dd.tfds_source("mnist", data_dir=str(tmp_path))

    class Tiny(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
                        "label": tfds.features.ClassLabel(num_classes=3),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(12):
                yield i, {"image": np.full((4, 4, 1), 20 * i, np.uint8), "label": i % 3}

    builder = Tiny(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    src = dd.tfds_source("tiny", data_dir=str(tmp_path))
    x, y = src.batch(0, 6)
    assert x.shape == (6, 4, 4, 1) and x.min() >= -1 and x.max() <= 1 and src.num_classes == 3
    np.testing.assert_array_equal(src.batch(0, 6)[0], x)


def test_diffusion_fields_reach_the_recipe():
    """EDM(sigma_data=0.3) is trained and preconditioned with σ_d = 0.3 (was always 0.5); an explicit option
    overrides the field; FDM's EDM base likewise; a misspelt option is an error."""
    from diffjax.diffusions.recipes import edm_preconditioning, edm_weight

    net = lambda x, c, labels=None: jnp.sin(x) + 0.1 * c[:, None]
    y, t = jnp.array([[0.3, -1.2], [2.0, 0.5]]), jnp.array([0.7, 3.0])
    for sde in (dj.EDM(sigma_data=0.3), dj.FDM(dj.EDM(sigma_data=0.3))):
        rec = LossConfig(fdm_warmup_images=0.0).recipe(sde)
        assert getattr(rec, "base", rec).sigma_data == 0.3
        sigma = sde.rho(t)
        _, w = rec.target_and_weight(sde, y, y, t, 0.0)
        np.testing.assert_allclose(w, edm_weight(sigma, 0.3), rtol=1e-6)
        rec = LossConfig(sigma_data=0.7, fdm_warmup_images=0.0).recipe(sde)
        assert getattr(rec, "base", rec).sigma_data == 0.7
    sde = dj.EDM(sigma_data=0.3)
    c_skip, c_out, c_in, c_noise = (a[:, None] for a in edm_preconditioning(t, 0.3))
    by_hand = c_skip * y + c_out * net(c_in * y, c_noise[:, 0])
    np.testing.assert_allclose(precondition(sde, net).x0(y, t), by_hand, rtol=1e-6)
    assert not np.allclose(precondition(dj.EDM(), net).x0(y, t), by_hand, rtol=1e-3)
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['sigma_dat'\]; accepted"):
        dj.EDM().training_recipe(sigma_dat=0.3)
    with pytest.raises(ValueError, match="unknown training option"):
        dj.VP().training_recipe(p_meen=0.0)
