"""FID: the Inception feature extractor's pieces and weight handling (random weights; the comparison with
pytorch-fid's network is `make fid-crosscheck`, recorded in experiments/results/fid_crosscheck.json), the Fréchet
distance against closed forms, batch-size independent moments and cached reference statistics."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import fid, inception
from diffjax.metrics import frechet_distance_moments


@pytest.fixture(scope="module")
def net():
    return inception.load_weights(inception.abstract_network(), inception.random_weights(0))


def test_resize_matches_half_pixel_bilinear():
    """Rows are convex weights; identity at the same size; upsampling equals jax.image.resize (half-pixel
    centres); downsampling reads the two nearest source pixels without anti-aliasing (torch's rule)."""
    for n_in, n_out in [(8, 299), (32, 299), (320, 299), (299, 299)]:
        m = inception.resize_matrix(n_in, n_out)
        np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-12)
        assert np.all(m >= 0) and np.all((m > 0).sum(1) <= 2)
    np.testing.assert_allclose(inception.resize_matrix(7, 7), np.eye(7), atol=1e-15)
    x = np.random.default_rng(0).uniform(size=(8, 8))
    up = inception.resize_matrix(8, 20) @ x @ inception.resize_matrix(8, 20).T
    np.testing.assert_allclose(
        up,
        jax.image.resize(jnp.asarray(x, jnp.float64) if jax.config.x64_enabled else x, (20, 20), "bilinear"),
        atol=1e-6,
    )
    down = inception.resize_matrix(4, 2)  # source coordinates 0.5 and 2.5
    np.testing.assert_allclose(down, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])


def test_exclusive_average_pool_counts_only_valid_pixels():
    x = np.random.default_rng(1).normal(size=(1, 5, 4, 2)).astype(np.float32)
    out = np.asarray(inception.avg_pool_exclusive(jnp.asarray(x)))
    for i in range(5):
        for j in range(4):
            win = x[0, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            np.testing.assert_allclose(out[0, i, j], win.reshape(-1, 2).mean(0), rtol=1e-5)


def test_weights_round_trip_and_precise_errors(net, tmp_path):
    sd = inception.state_dict(net)
    assert len(sd) == 470 and sum(v.size for v in sd.values()) == 21_820_000  # 23.9 M with the unused fc layer
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)  # torch layout OIHW
    path = str(tmp_path / "w.npz")
    np.savez(path, **sd)
    other = inception.load_weights(inception.abstract_network(), path)
    for k, v in inception.state_dict(other).items():
        np.testing.assert_array_equal(v, sd[k])
    bad = dict(sd)
    bad["Mixed_5b.branch1x1.conv.weight"] = bad["Mixed_5b.branch1x1.conv.weight"][:, :10]
    zeros = {k: np.zeros_like(v) for k, v in sd.items()}
    with pytest.raises(ValueError, match="'Mixed_5b.branch1x1.conv.weight': shape"):
        inception.load_weights(other, zeros | {"Mixed_5b.branch1x1.conv.weight": bad["Mixed_5b.branch1x1.conv.weight"]})
    with pytest.raises(ValueError, match="miss 1 parameters"):
        inception.load_weights(other, {k: v for k, v in zeros.items() if k != "Mixed_7c.branch_pool.bn.weight"})
    with pytest.raises(ValueError, match="unexpected parameter"):
        inception.load_weights(other, sd | {"head.dense.weight": np.zeros(3)})
    for k, v in inception.state_dict(other).items():  # the failed loads changed nothing
        np.testing.assert_array_equal(v, sd[k])
    with pytest.raises(FileNotFoundError, match="never downloads.*convert"):
        inception.feature_extractor(str(tmp_path / "missing.npz"))


def test_features_batch_size_independent_and_gray_equals_repeated_rgb(net):
    imgs = np.random.default_rng(2).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    f = jax.jit(lambda x: net(x))
    whole = np.asarray(f(imgs))
    assert whole.shape == (3, 2048) and np.all(np.isfinite(whole))
    single = np.concatenate([np.asarray(f(imgs[i : i + 1])) for i in range(3)])
    np.testing.assert_allclose(single, whole, rtol=1e-5, atol=1e-6 * np.abs(whole).max())
    np.testing.assert_allclose(np.asarray(f(np.repeat(imgs, 3, -1))), whole, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="C in"):
        net(np.zeros((1, 8, 8, 2)))


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(500, 6))
    m = fid.Moments(6).add(f)
    assert abs(fid.fid(m, m)) < 1e-9
    a, b = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    mu = rng.normal(size=6)
    closed = float(np.sum(mu**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))  # diagonal (commuting) covariances
    assert abs(frechet_distance_moments(mu, np.diag(a), np.zeros(6), np.diag(b)) - closed) < 1e-10
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # invariant under a common rotation
    assert (
        abs(frechet_distance_moments(q @ mu, q @ np.diag(a) @ q.T, np.zeros(6), q @ np.diag(b) @ q.T) - closed) < 1e-9
    )
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance_moments(mu, np.diag(a), np.zeros(5), np.eye(5))


def test_moments_do_not_depend_on_batching_and_match_numpy():
    f = np.random.default_rng(4).normal(size=(101, 5)) * 3 + 1
    whole = fid.Moments(5).add(f)
    chunked = fid.Moments(5)
    for i in range(0, 101, 7):
        chunked.add(f[i : i + 7])
    np.testing.assert_allclose(chunked.mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(chunked.cov, np.cov(f, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(chunked.cov, whole.cov, rtol=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        fid.Moments(5).add(np.full((2, 5), np.nan))


def test_cached_reference_reuses_only_matching_provenance(tmp_path):
    path = str(tmp_path / "ref.npz")
    calls = []

    def compute(scale):
        calls.append(scale)
        return fid.Moments(3).add(np.random.default_rng(5).normal(size=(20, 3)) * scale)

    a = fid.cached_reference(path, {"data": "digits", "n": 20}, lambda: compute(1.0))
    b = fid.cached_reference(path, {"data": "digits", "n": 20}, lambda: compute(2.0))
    assert calls == [1.0] and np.array_equal(a.cov, b.cov)
    c = fid.cached_reference(path, {"data": "digits", "n": 21}, lambda: compute(2.0))
    assert calls == [1.0, 2.0] and not np.allclose(c.cov, a.cov)
    with open(path, "wb") as f:
        f.write(b"garbage")
    fid.cached_reference(path, {"data": "digits", "n": 21}, lambda: compute(3.0))
    assert calls[-1] == 3.0 and json.loads(str(np.load(path)["provenance"]))["n"] == 21 and os.path.exists(path)
    feats = str(tmp_path / "feats.npz")  # feature vectors for precision/recall: the same rule
    x = fid.cached_features(feats, {"n": 4}, lambda: calls.append("f") or np.ones((4, 3)))
    y = fid.cached_features(feats, {"n": 4}, lambda: calls.append("g") or np.zeros((4, 3)))
    z = fid.cached_features(feats, {"n": 5}, lambda: calls.append("h") or np.zeros((5, 3)))
    assert calls[-2:] == ["f", "h"] and np.array_equal(x, y) and x.dtype == np.float32 and z.shape == (5, 3)


def test_to_unit_range_quantizes_to_8_bits():
    x = fid.to_unit_range(np.array([-2.0, -1.0, 0.0, 0.3, 1.0, 5.0]))
    np.testing.assert_allclose(x, [0, 0, 128 / 255, np.round(0.65 * 255) / 255, 1, 1])


def test_moments_of_feeds_fixed_batches_and_drops_the_padding():
    """Every call sees exactly ``batch_size`` images (one compilation); the padding does not enter the moments;
    the result does not depend on the batch size or on how the stream is chunked."""
    rng = np.random.default_rng(6)
    imgs = rng.uniform(-1, 1, size=(23, 4, 4, 1))
    seen = []

    def feats(x):
        seen.append(len(x))
        return x.reshape(len(x), -1)[:, :5] * 3.0

    a = fid.moments_of(feats, [imgs[:10], imgs[10:]], dim=5, batch_size=4)
    assert set(seen) == {4}
    b = fid.moments_of(feats, [imgs], dim=5, batch_size=7)
    direct = fid.Moments(5).add(fid.to_unit_range(imgs).reshape(23, -1)[:, :5] * 3.0)
    assert a.n == b.n == 23
    np.testing.assert_allclose(a.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(b.cov, direct.cov, rtol=1e-10)
