"""Files that never hold half-written or mixed results: atomic writes, SHA-256 digests, one writer per folder.

* :func:`write_atomic` / :func:`save_npz_atomic` / :func:`save_npy_atomic` / :func:`atomic_path` write a temporary
  file in the target's
  folder and rename it over the target (``os.replace`` is atomic on POSIX): a reader sees the old file or the new
  one, never a truncated one, also when the disk fills up or the process dies mid-write.
* :func:`file_digest` (SHA-256 of a file) and :func:`tree_digest` (of a PyTree's arrays and structure: the
  identity of a model's weights, used to tie cached samples to the model that made them).
* :class:`FolderLock` — an exclusive ``fcntl.flock`` on ``<folder>/.lock`` holding the holder's host, PID and
  command. A second writer is refused at once with :class:`FolderInUse` naming the holder; the kernel releases the
  lock when its process dies, so a lock left by a dead process is simply taken over (with a note). Locks are
  advisory and per host: on network file systems without ``flock`` support across hosts, run one writer per folder.

No network library is needed (sampling and the training loop both use it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import sys
import time
from typing import Any

import numpy as np


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(tree: Any) -> str:
    """SHA-256 over a PyTree's leaves (arrays: dtype, shape and bytes; other leaves: their repr without memory
    addresses) and its structure (static fields included): equal for equal weights of the same model."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h = hashlib.sha256(re.sub(r" at 0x[0-9a-f]+", "", repr(treedef)).encode())
    for leaf in leaves:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            arr = np.asarray(jax.device_get(leaf))
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        else:
            h.update(re.sub(r" at 0x[0-9a-f]+", "", repr(leaf)).encode())
    return h.hexdigest()


def _tmp_path(path: str, suffix: str = "") -> str:
    return f"{path}.tmp{os.getpid()}{suffix}"


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename); the folder is created if needed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path beside ``path`` with the same extension, for any writer (``savefig``, ``np.savez``, …):
    renamed over ``path`` when the block succeeds, removed when it fails; the folder is created if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def save_npz_atomic(path: str, **arrays) -> None:
    """``np.savez(path, **arrays)``, atomically (``path`` should end in ``.npz``, as numpy appends it)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def save_npy_atomic(path: str, array) -> str:
    """``np.save(path, array)`` atomically; returns the SHA-256 of the written file."""
    tmp = _tmp_path(path, ".npy")
    try:
        np.save(tmp, array)
        digest = file_digest(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return digest


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def describe_os_error(e: OSError, path: str) -> str:
    """One sentence for the usual reasons a write fails (disk full, read-only, permission)."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EFBIG: "the file size limit was reached",
    }
    why = reasons.get(e.errno, e.strerror or type(e).__name__)
    return f"cannot write to {path}: {why}"


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive, advisory lock on ``folder`` (module docstring): ``with FolderLock(folder, "training"): …``.

    Re-entrant within a process (a script that locks its run folder can call a trainer that locks it again): the
    process's held locks are counted in ``FolderLock.held_here``, the one piece of process state here, like an
    open file table."""

    held_here: dict = {}  # absolute folder -> [fd, count] of the locks this process holds

    def __init__(self, folder: str, purpose: str = "writing"):
        self.folder, self.purpose = os.path.abspath(folder), purpose
        self.path = os.path.join(self.folder, ".lock")
        self._fd = None

    def _holder(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "FolderLock":
        """Take the lock or raise :class:`FolderInUse` (held by a live process) / ``OSError`` (cannot create it)."""
        import fcntl

        if self._fd is not None:
            return self
        if self.folder in FolderLock.held_here:
            FolderLock.held_here[self.folder][1] += 1
            self._fd = FolderLock.held_here[self.folder][0]
            return self
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            h = self._holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["time"])) if "time" in h else "?"
            raise FolderInUse(
                f"{self.folder} is in use: {h.get('purpose', 'a process')} by PID {h.get('pid', '?')} on "
                f"{h.get('host', '?')} since {since} ({h.get('command', '?')}). Wait for it to finish, or "
                "use another folder."
            ) from None
        old = self._holder()
        if old.get("pid") not in (None, os.getpid()):
            print(
                f"note: {self.folder} was locked by PID {old['pid']} on {old.get('host', '?')}, which is no longer "
                "running; taking it over",
                file=sys.stderr,
            )
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
            "purpose": self.purpose,
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        FolderLock.held_here[self.folder] = [fd, 1]
        return self

    def release(self) -> None:
        """Give the lock up (the lock file stays; it is free once no process holds it)."""
        import fcntl

        if self._fd is None:
            return
        entry = FolderLock.held_here.get(self.folder)
        self._fd, fd = None, self._fd
        if entry is not None and entry[1] > 1:
            entry[1] -= 1
            return
        FolderLock.held_here.pop(self.folder, None)
        self._fd = fd
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
