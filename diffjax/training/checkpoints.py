"""Checkpoint integrity: what a checkpoint must match (the signature), the fingerprint of its arrays, the error
for one that cannot be used, and the quiet, atomic file helpers the trainer's checkpointing uses."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from typing import Any

import jax
import numpy as np

from ..diffusions.base import LinearDiffusion


def _signature(sde: LinearDiffusion, params: Any, graphdef: Any = None) -> dict:
    """What a checkpoint must match: the diffusion, the parameter shapes and dtypes, and the network's whole
    structure with its static fields (a digest of its NNX graph definition: embedding kind, dropout, …)."""
    shapes = jax.tree.map(lambda a: [list(a.shape), str(a.dtype)], params)
    sig = {"sde": repr(sde), "params": json.loads(json.dumps(shapes, default=str))}
    if graphdef is not None:
        text = re.sub(r" at 0x[0-9a-f]+", "", repr(graphdef))  # function reprs carry process-specific addresses
        sig["network"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return sig


def state_digest(state: Any) -> str:
    """SHA-256 over every array of a (replicated) train state, leaf paths included: a checkpoint's fingerprint."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        arr = np.asarray(leaf.addressable_shards[0].data if hasattr(leaf, "addressable_shards") else leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (unreadable, altered, or of another model)."""


class _quiet_stderr:
    """Capture what is written to file descriptor 2 (Python and C++ alike) and to the ``asyncio`` logger.

    The capture is a pipe drained by a thread into memory (the last 64 kB are kept), not a file: when the disk is
    full, a file would fail to take the very tracebacks being hidden and leave Python's stderr in an error state."""

    LIMIT = 1 << 16

    def __enter__(self):
        import threading

        self.text = ""
        self._log = logging.getLogger("asyncio")
        self._level = self._log.level
        self._log.setLevel(logging.CRITICAL)
        sys.stderr.flush()
        self._read, write = os.pipe()
        self._saved = os.dup(2)
        os.dup2(write, 2)
        os.close(write)
        self._chunks = []

        def drain():
            while True:
                data = os.read(self._read, 1 << 14)
                if not data:
                    break
                self._chunks.append(data)
                while sum(map(len, self._chunks)) > self.LIMIT and len(self._chunks) > 1:
                    self._chunks.pop(0)

        self._thread = threading.Thread(target=drain, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        except OSError:
            pass
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees the end
        os.close(self._saved)
        self._thread.join(timeout=5)
        os.close(self._read)
        self.text = b"".join(self._chunks).decode(errors="replace")
        self._log.setLevel(self._level)
        return False
