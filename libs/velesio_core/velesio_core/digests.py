"""The sha256 of a model file, and the sidecar that keeps it.

Hashing a 2-7 GB file takes seconds, so the digest is kept next to the file in ``<file>.sha256``
(``<hex> <size> <mtime_ns>``), valid while the file's size and mtime match. The downloader writes
it when it has verified a file anyway; the checkpoint scan reads it (A1111 names checkpoints by
their hash).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1024 * 1024


def sha256_of(path: Path) -> str:
    """The file's sha256, computed (in chunks: model files are gigabytes)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256, from its sidecar when still valid, else computed (and the sidecar written)."""
    stat = path.stat()
    try:
        digest, size, mtime = sidecar_path(path).read_text().split()
        if int(size) == stat.st_size and int(mtime) == stat.st_mtime_ns:
            return digest
    except (OSError, ValueError):
        pass
    digest = sha256_of(path)
    write_sidecar(path, digest)
    return digest


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path, digest: str) -> None:
    stat = path.stat()
    partial = path.with_name(f".{path.name}.sha256.{os.getpid()}")
    try:
        partial.write_text(f"{digest} {stat.st_size} {stat.st_mtime_ns}\n")
        partial.replace(sidecar_path(path))
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only models volume: hash again next time
