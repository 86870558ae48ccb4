"""The diffusers configs a single-file checkpoint needs, shipped with velesio so nothing is fetched.

A ``.safetensors`` or ``.ckpt`` checkpoint holds weights only. diffusers' ``from_single_file``
builds the pipeline around them from a *config folder* (model_index.json and each component's
config, plus the tokenizer), which it downloads from the Hugging Face Hub unless given one. The
worker loads with ``local_files_only`` and passes one of these folders instead:

- ``v1``: Stable Diffusion 1.x and its fine-tunes (the common case for Unity texture work);
- ``inpainting``: SD 1.x inpainting checkpoints (a UNet with 9 input channels).

Which one a checkpoint needs is read from the shapes of a few tensors, as diffusers itself
infers it (``infer_diffusers_model_type``), without loading the weights. A folder
``SD_CONFIGS_DIR/<type>/`` adds or overrides a type (an SD 2.x config, a custom fine-tune's).

The tokenizer's vocabulary is CLIP's BPE table (``clip_bpe_simple_vocab_16e6.txt.gz``, MIT,
OpenAI, see CLIP_VOCAB_LICENSE), from which ``vocab.json`` and ``merges.txt`` are derived the way
CLIP's own tokenizer derives them: the same ids the Hub's copies have.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import invalid_request

_BPE_FILE = "clip_bpe_simple_vocab_16e6.txt.gz"
#: CLIP keeps the first 48,894 merges of the table (49,152 ids less 256 bytes and 2 specials).
_MERGES = 49152 - 256 - 2


def shipped_root() -> Path:
    return Path(str(resources.files(__package__).joinpath("configs")))


def model_type(checkpoint: Path) -> str:
    """diffusers' name for a single-file checkpoint's architecture (``v1``, ``inpainting``, ``xl_base``...)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    kind: str = infer_diffusers_model_type(_tensor_shapes(checkpoint))
    return kind


class ConfigFolders:
    """Config folders by model type, materialised (with the tokenizer files) once per process."""

    def __init__(self, extra_root: Path | None = None) -> None:
        self._roots = [root for root in (extra_root, shipped_root()) if root is not None]
        self._lock = threading.Lock()
        self._made: dict[str, Path] = {}
        self._work: Path | None = None

    def known_types(self) -> list[str]:
        found = {path.parent.name for root in self._roots for path in root.glob("*/model_index.json")}
        return sorted(found)

    def for_type(self, type_name: str, checkpoint_name: str) -> Path:
        with self._lock:
            if type_name not in self._made:
                self._made[type_name] = self._materialise(type_name, checkpoint_name)
            return self._made[type_name]

    def _materialise(self, type_name: str, checkpoint_name: str) -> Path:
        source = next(
            (root / type_name for root in self._roots if (root / type_name / "model_index.json").is_file()), None
        )
        if source is None:
            raise invalid_request(
                f"{checkpoint_name} is a {type_name!r} checkpoint, and velesio ships configs for "
                f"{', '.join(self.known_types())} only: save it as a diffusers folder, or put a diffusers config "
                f"folder for it in SD_CONFIGS_DIR/{type_name}/",
            )
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="velesio-sd-configs-"))
            atexit.register(shutil.rmtree, self._work, ignore_errors=True)
        target = self._work / type_name
        shutil.copytree(source, target)
        tokenizers = [folder for folder in target.iterdir() if folder.name.startswith("tokenizer") and folder.is_dir()]
        for folder in tokenizers:
            if not (folder / "vocab.json").exists() and not (folder / "tokenizer.json").exists():
                write_clip_vocabulary(folder)
        return target


def write_clip_vocabulary(folder: Path) -> None:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` into ``folder``."""
    vocab, merges = clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


@functools.cache
def clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's token -> id table and its BPE merges, as CLIP's SimpleTokenizer builds them."""
    table = resources.files(__package__).joinpath("configs").joinpath(_BPE_FILE).read_bytes()
    merges = tuple(gzip.decompress(table).decode("utf-8").split("\n")[1 : _MERGES + 1])
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters, which CLIP's BPE is written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


class _Shape:
    __slots__ = ("shape",)

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


class _TensorShapes(Mapping[str, Any]):
    """A checkpoint's tensor names and shapes, read from a safetensors header without the weights."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._shapes = shapes

    def __getitem__(self, key: str) -> _Shape:
        return _Shape(self._shapes[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def _tensor_shapes(checkpoint: Path) -> Mapping[str, Any]:
    if checkpoint.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(checkpoint), framework="pt") as handle:
            return _TensorShapes({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})  # noqa: SIM118
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    state_dict: Mapping[str, Any] = load_single_file_checkpoint(str(checkpoint), local_files_only=True)
    return state_dict
