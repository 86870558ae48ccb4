"""The checkpoints, LoRAs and VAEs a worker can load, named the way AUTOMATIC1111 names them.

A checkpoint is a single file (``.safetensors``, ``.ckpt``) or a diffusers folder (one with a
``model_index.json``) in ``models/image/models/Stable-diffusion/``, subfolders included. A1111
calls it by several names, all accepted: its *title* (``name.safetensors [abcdef1234]``), its
*model_name* (the relative path without extension, ``/`` turned into ``_``), its file name, and
its hashes. The short hash is the first ten hex digits of the file's sha256, which A1111 prints
in every infotext and the Unity client shows; it is kept beside the file (digests.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeVar

from ...digests import file_sha256
from ...results import CheckpointEntry

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")

#: An element of A1111's sd-models list: a worker's CheckpointEntry, or the same as read back.
_Entry = TypeVar("_Entry", bound=Mapping[str, object])


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    #: The path relative to the checkpoints folder, with ``/`` separators.
    name: str
    sha256: str | None

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def model_name(self) -> str:
        stem = self.name if self.is_folder else self.name.rsplit(".", 1)[0]
        return stem.replace("/", "_")

    @property
    def short_hash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]" if self.short_hash else self.name

    def a1111(self) -> CheckpointEntry:
        """One element of A1111's GET /sdapi/v1/sd-models."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.short_hash,
            "sha256": self.sha256,
            "filename": str(self.path.resolve()),
            "config": None,
        }


def find_checkpoints(folder: Path) -> list[Checkpoint]:
    """Every checkpoint under ``folder``, sorted by name (A1111's order)."""
    if not folder.is_dir():
        return []
    found: list[Checkpoint] = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        if (root_path / "model_index.json").is_file() and root_path != folder:
            found.append(Checkpoint(root_path, root_path.relative_to(folder).as_posix(), None))
            dirs.clear()  # a diffusers folder's component weights are not checkpoints
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in files:
            path = root_path / file
            if path.suffix in CHECKPOINT_SUFFIXES and not file.startswith("."):
                found.append(Checkpoint(path, path.relative_to(folder).as_posix(), file_sha256(path)))
    return sorted(found, key=lambda checkpoint: checkpoint.name.lower())


def find_weights(folder: Path) -> dict[str, Path]:
    """LoRAs or VAEs in ``folder``: file stem -> path (A1111 calls a LoRA by its stem)."""
    if not folder.is_dir():
        return {}
    weights: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix in WEIGHT_SUFFIXES and path.is_file() and not path.name.startswith("."):
            weights.setdefault(path.stem, path)
    return weights


def aliases(entry: Mapping[str, object]) -> set[str]:
    """Every name A1111 accepts for a checkpoint (an element of its sd-models list)."""
    title = str(entry["title"])
    name = title.rsplit(" [", 1)[0] if entry.get("hash") else title
    names = {title, name, str(entry["model_name"]), PurePath(str(entry["filename"])).name}
    if entry.get("sha256"):
        names |= {str(entry["sha256"]), str(entry["hash"]), f"{name} [{entry['sha256']}]"}
    return names


def resolve(entries: Sequence[_Entry], wanted: str) -> _Entry | None:
    """The sd-models entry A1111 would pick for ``wanted`` (any of its aliases), or None."""
    wanted = wanted.strip()
    for entry in entries:
        if wanted in aliases(entry):
            return entry
    # A title whose hash part is stale or missing ("name.safetensors [old]"): match the name.
    bare = wanted.split(" [", 1)[0]
    return next((entry for entry in entries if bare in aliases(entry)), None)
