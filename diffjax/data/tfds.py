"""TFDS image data sets (mnist, cifar10, celeb_a, …) read from a user's prepared ``data_dir``, never downloaded.

``tfds.data_source(name, data_dir=..., download=False)`` gives random access to array_record data without
TensorFlow. Missing or unprepared data fail at once with instructions (a download attempt would hang offline).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from .base import IndexedSource


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("TFDS data sets need tensorflow-datasets: pip install 'diffjax[data]'") from e
    return tfds


@dataclasses.dataclass(frozen=True)
class TFDSSource(IndexedSource):
    """Deterministic, resumable, sharded batches from a TFDS split (same contract as ``ArraySource``)."""

    source: object
    image_key: str = "image"
    label_key: str | None = "label"
    seed: int = 0
    flip: bool = False
    num_classes: int = 0

    def __len__(self) -> int:
        return len(self.source)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self._decode([self.source[0]]).shape[1:])

    def _decode(self, records) -> np.ndarray:
        x = np.stack([np.asarray(r[self.image_key]) for r in records])
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 127.5 - 1.0
        if x.ndim == 3:
            x = x[..., None]
        return x.astype(np.float32)

    def examples(self, indices):
        """The records at ``indices``, decoded to float32 images in [−1, 1], and their labels."""
        recs = [self.source[int(i)] for i in indices]
        labels = None
        if self.label_key and self.label_key in recs[0]:
            labels = np.asarray([r[self.label_key] for r in recs], np.int32)
        return self._decode(recs), labels


def tfds_source(
    name: str,
    data_dir: str | None = None,
    split: str = "train",
    seed: int = 0,
    flip: bool = False,
    image_key: str = "image",
    label_key: str | None = "label",
) -> TFDSSource:
    """A prepared TFDS data set as a batch source. Raises with a preparation recipe when it is not there."""
    if not data_dir:
        raise ValueError(
            f"TFDS data set {name!r} needs data_dir= (a directory with the prepared data set); "
            "diffjax never downloads at run time"
        )
    tfds = _import_tfds()
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir!r} does not exist")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as e:  # unknown name, unreadable dir
        raise ValueError(f"cannot open TFDS data set {name!r} in {data_dir!r}: {e}") from e
    if not prepared:
        raise FileNotFoundError(
            f"TFDS data set {name!r} is not prepared in {data_dir!r}. On a machine with internet run:\n"
            f"  python -c \"import tensorflow_datasets as tfds; tfds.data_source('{name}', data_dir='{data_dir}', "
            f'download=True)"\n(or `tfds build {name} --data_dir {data_dir} --file_format array_record`), then copy '
            "the directory here."
        )
    src = tfds.data_source(name, data_dir=data_dir, split=split, download=False)
    info = builder.info
    num_classes = 0
    if label_key and label_key in info.features and hasattr(info.features[label_key], "num_classes"):
        num_classes = int(info.features[label_key].num_classes)
    return TFDSSource(src, image_key, label_key, seed, flip, num_classes)
