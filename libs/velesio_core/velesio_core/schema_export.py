"""``velesio-schemas``: write the JSON Schema of every request velesio validates, and of the job
envelope, one file each. The written files are committed (libs/velesio_core/schemas/) and a test
fails when they drift from the code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from .dialects.a1111 import schemas as a1111
from .dialects.llamacpp import schemas as llamacpp
from .jobs import Job

SCHEMAS: dict[str, type[BaseModel]] = {
    "job": Job,
    "llamacpp.completion": llamacpp.CompletionRequest,
    "llamacpp.tokenize": llamacpp.TokenizeRequest,
    "llamacpp.detokenize": llamacpp.DetokenizeRequest,
    "llamacpp.apply-template": llamacpp.ApplyTemplateRequest,
    "llamacpp.embeddings": llamacpp.EmbeddingsRequest,
    "a1111.txt2img": a1111.Txt2ImgRequest,
    "a1111.img2img": a1111.Img2ImgRequest,
    "a1111.options": a1111.OptionsRequest,
}

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[1] / "schemas"


def render() -> dict[str, str]:
    """File name -> content."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in SCHEMAS.items()
    }


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render().items():
        path = directory / name
        path.write_text(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write velesio's JSON Schemas.")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    args = parser.parse_args(argv)
    for path in write(args.directory):
        print(path)


if __name__ == "__main__":
    main()
