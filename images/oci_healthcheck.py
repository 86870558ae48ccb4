"""Give an image in an OCI layout Docker's health check, and print manifest digests.

    oci_healthcheck.py LAYOUT REF COMMAND...   set the image config's Healthcheck to COMMAND
    oci_healthcheck.py --digest LAYOUT REF     print the manifest digest of REF

The OCI image config has no health check field; Docker's config does (`config.Healthcheck`), and
Docker reads it from OCI images too. buildah keeps it only when committing in Docker's format, so
images/build.sh commits OCI and adds it here: a new config blob, then the manifest and index
entries whose digests depend on it. JSON is written compactly in a fixed key order, so the result
is as reproducible as its input.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

NANOSECONDS = 1_000_000_000
HEALTHCHECK = {"Interval": 30 * NANOSECONDS, "Timeout": 5 * NANOSECONDS, "StartPeriod": 60 * NANOSECONDS, "Retries": 3}
REF_NAME = "org.opencontainers.image.ref.name"


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":")
    return layout / "blobs" / algorithm / hex_digest


def read_blob(layout: Path, descriptor: dict) -> dict:
    return json.loads(blob_path(layout, descriptor["digest"]).read_bytes())


def write_blob(layout: Path, document: dict, descriptor: dict) -> None:
    """Store a JSON document and point the descriptor at it (the old blob is removed)."""
    data = json.dumps(document, separators=(",", ":")).encode()
    blob_path(layout, descriptor["digest"]).unlink()
    descriptor["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
    descriptor["size"] = len(data)
    blob_path(layout, descriptor["digest"]).write_bytes(data)


def manifest_descriptor(index: dict, ref: str) -> dict:
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get(REF_NAME) == ref:
            return descriptor
    raise SystemExit(f"no image {ref!r} in the layout")


def add_healthcheck(layout: Path, ref: str, command: list[str]) -> None:
    index = json.loads((layout / "index.json").read_text())
    descriptor = manifest_descriptor(index, ref)
    manifest = read_blob(layout, descriptor)
    config = read_blob(layout, manifest["config"])
    config["config"]["Healthcheck"] = {"Test": ["CMD", *command], **HEALTHCHECK}
    write_blob(layout, config, manifest["config"])
    write_blob(layout, manifest, descriptor)
    (layout / "index.json").write_text(json.dumps(index, separators=(",", ":")))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--digest"] and len(argv) == 3:
        index = json.loads((Path(argv[1]) / "index.json").read_text())
        print(manifest_descriptor(index, argv[2])["digest"])
    elif len(argv) >= 3 and not argv[0].startswith("-"):
        add_healthcheck(Path(argv[0]), argv[1], argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
