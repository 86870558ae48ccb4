"""Which packages of a requirements lock this interpreter installs, checked against what it has.

Run by venv.bzl with the venv's python3: prints the venv's site-packages on the first line, then
one `name` per locked package whose environment marker holds here. Exits 1, naming them, when a
package is missing or at another version than locked, so that Bazel never runs with a venv that
was not installed from the lock.
"""

from __future__ import annotations

import sys
import sysconfig
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def locked_requirements(lock_path: str) -> list[Requirement]:
    """The `name==version ; marker` requirements of a pip lock (hash and comment lines skipped)."""
    requirements = []
    with open(lock_path, encoding="utf-8") as lock:
        lines = lock.read().splitlines()
    for line in lines:
        line = line.strip().removesuffix("\\").strip()
        if line and line[0].isalnum():
            requirements.append(Requirement(line))
    return requirements


def main(lock_path: str) -> int:
    names, problems = [], []
    for requirement in locked_requirements(lock_path):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (pin,) = requirement.specifier
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = "nothing"
        if installed != pin.version:
            problems.append(f"{requirement.name} (locked {pin.version}, installed {installed})")
        names.append(canonicalize_name(requirement.name))
    if problems:
        print(f"the venv does not match {lock_path}: {', '.join(problems)}; run `make install`", file=sys.stderr)
        return 1
    print(sysconfig.get_paths()["purelib"])
    print("\n".join(sorted(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
