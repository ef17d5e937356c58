"""Cross-check diffjax's FID Inception against pytorch-fid's own network with the same random weights.

Two steps, because the reference needs torch and pytorch-fid (a large install kept out of the test suite):

    python experiments/fid_crosscheck.py torch ref.npz     # in an environment with torch, torchvision, pytorch-fid
    python experiments/fid_crosscheck.py jax ref.npz       # in diffjax's environment -> results/fid_crosscheck.json

``make fid-crosscheck`` does both (creating .venv-fid for the first). The torch step draws He-scaled random
convolutions and random batch-norm statistics (seed 0), loads them into pytorch-fid's ``InceptionV3`` (its FID
variant, with the weight download replaced by these arrays) and records the 2048-d pool features of a few images of
several sizes and channel counts (up- and down-sampling to 299). The jax step loads the same arrays into
:class:`diffjax.inception.InceptionV3` and reports the relative difference of the features and of an FID computed
from them.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SHAPES = [(4, 32, 32, 3), (2, 28, 28, 1), (2, 8, 8, 1), (2, 320, 300, 3)]  # NHWC, values in [0, 1]


def torch_step(out):
    import torch
    import torch.nn.functional  # noqa: F401
    from pytorch_fid import inception as pfi

    rng = np.random.default_rng(0)

    def random_state(model):
        sd = {}
        for k, v in model.state_dict().items():
            shape = tuple(v.shape)
            if k.endswith("conv.weight"):
                arr = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
            elif k.endswith("bn.weight") or k.endswith("running_var"):
                arr = rng.uniform(0.5, 1.5, shape)
            elif k.endswith("bn.bias") or k.endswith("running_mean"):
                arr = rng.normal(0, 0.1, shape)
            elif k.endswith("num_batches_tracked"):
                sd[k] = v
                continue
            else:  # fc
                arr = rng.normal(0, 0.01, shape)
            sd[k] = torch.tensor(arr, dtype=torch.float32)
        return sd

    captured = {}

    def fake_download(url, **kw):  # the FID graph's weights -> our random ones (no network access)
        trunk = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        for name, cls, arg in [
            ("Mixed_5b", pfi.FIDInceptionA, (192, 32)),
            ("Mixed_5c", pfi.FIDInceptionA, (256, 64)),
            ("Mixed_5d", pfi.FIDInceptionA, (288, 64)),
            ("Mixed_6b", pfi.FIDInceptionC, (768, 128)),
            ("Mixed_6c", pfi.FIDInceptionC, (768, 160)),
            ("Mixed_6d", pfi.FIDInceptionC, (768, 160)),
            ("Mixed_6e", pfi.FIDInceptionC, (768, 192)),
            ("Mixed_7b", pfi.FIDInceptionE_1, (1280,)),
            ("Mixed_7c", pfi.FIDInceptionE_2, (2048,)),
        ]:
            setattr(trunk, name, cls(*arg))
        captured.update(random_state(trunk))
        return captured

    pfi.load_state_dict_from_url = fake_download
    net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    arrays = {"w/" + k: v.numpy() for k, v in captured.items() if not k.endswith("num_batches_tracked")}
    for i, shape in enumerate(SHAPES):
        img = rng.uniform(0, 1, shape).astype(np.float32)
        x = torch.tensor(img).permute(0, 3, 1, 2)
        if shape[-1] == 1:
            x = x.repeat(1, 3, 1, 1)
        with torch.no_grad():
            feats = net(x)[0][:, :, 0, 0].numpy()
        arrays[f"images{i}"], arrays[f"features{i}"] = img, feats
    arrays["versions"] = np.array(json.dumps({"torch": torch.__version__, "pytorch_fid": _version("pytorch-fid")}))
    np.savez(out, **arrays)
    print(f"wrote {out}")


def _version(pkg):
    from importlib.metadata import version

    return version(pkg)


def jax_step(path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import jax

    from diffjax import fid, inception

    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    sd = {k[2:]: v for k, v in data.items() if k.startswith("w/")}
    net = inception.load_weights(inception.InceptionV3(), sd)
    rows, all_ours, all_ref = [], [], []
    for i, shape in enumerate(SHAPES):
        ours = np.asarray(jax.jit(lambda x: net(x))(data[f"images{i}"]))
        ref = data[f"features{i}"]
        rel = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
        rows.append({"shape": list(shape), "max_rel_diff": rel, "feature_scale": float(np.max(np.abs(ref)))})
        all_ours.append(ours), all_ref.append(ref)
        print(f"images {shape}: max |ours − pytorch-fid| / max |pytorch-fid| = {rel:.2e}")
    a, b = np.concatenate(all_ours[:2]), np.concatenate(all_ref[:2])
    half = len(a) // 2
    fid_ours = fid.fid(fid.Moments(2048).add(a[:half]), fid.Moments(2048).add(a[half:]))
    fid_ref = fid.fid(fid.Moments(2048).add(b[:half]), fid.Moments(2048).add(b[half:]))
    result = {
        "rows": rows,
        "max_rel_diff": max(r["max_rel_diff"] for r in rows),
        "tolerance": 1e-4,
        "fid_between_halves": {
            "diffjax": fid_ours,
            "pytorch_fid_features": fid_ref,
            "rel_diff": abs(fid_ours - fid_ref) / abs(fid_ref),
        },
        "reference": json.loads(str(data["versions"])),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fid_crosscheck.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"max relative difference {result['max_rel_diff']:.2e} (tolerance 1e-4); wrote {out}")
    if result["max_rel_diff"] > 1e-4:
        raise SystemExit("FID features differ from pytorch-fid's beyond the tolerance")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("torch", "jax"):
        raise SystemExit(__doc__)
    (torch_step if sys.argv[1] == "torch" else jax_step)(sys.argv[2])
