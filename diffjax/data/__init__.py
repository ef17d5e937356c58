"""Datasets as deterministic, resumable, sharded batch sources: ``source.batch(step, batch_size, process_index,
process_count) -> (x, labels)`` depends only on its arguments, so training resumes exactly from a step count."""

from .sources import ArraySource, digits, get, toy, toy_names
from .tfds import tfds_source

__all__ = ["ArraySource", "digits", "toy", "toy_names", "tfds_source", "get"]
