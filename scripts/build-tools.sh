#!/usr/bin/env bash
# The tools of the build paths, installed when missing (idempotent; quick when all are there):
#
#   scripts/build-tools.sh [bazel] [nix] [images]     (no argument: all three)
#
#   bazel    Debian's Bazel 4 and the rule packages it cannot download here, the pinned buildifier
#            from npm (tools/buildifier/package-lock.json), unshare/ip for the offline check
#   nix      Debian's nix-bin: parses and evaluates the flake (no nixpkgs here to build it)
#   images   buildah, mmdebstrap, skopeo, oci-image-tool; redis-server for the images' check
#
# docs/builds.md says why each. With VELESIO_NO_APT=1 the Debian packages are left to the caller.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh

groups=("$@")
((${#groups[@]})) || groups=(bazel nix images)
for group in "${groups[@]}"; do
    case $group in
    bazel)
        apt_install bazel-bootstrap bazel-rules-java bazel-skylib util-linux iproute2
        # npm may come from another Node.js than Debian's; add Debian's only when there is none.
        command -v npm >/dev/null || apt_install npm
        # npm ci installs exactly the locked buildifier; redo it only when the lock changed.
        stamp=tools/buildifier/node_modules/.velesio-installed
        digest=$(sha256sum tools/buildifier/package-lock.json | cut -d' ' -f1)
        if [[ ! -f $stamp || $(cat "$stamp") != "$digest" ]]; then
            printf '\033[1mvelesio:\033[0m installing buildifier (npm ci)\n'
            npm ci --prefix tools/buildifier --no-audit --no-fund --loglevel=error >/dev/null
            echo "$digest" > "$stamp"
        fi
        ;;
    nix) apt_install nix-bin ;;
    images) apt_install buildah mmdebstrap skopeo oci-image-tool redis-server ;;
    *)
        echo "usage: $0 [bazel] [nix] [images]" >&2
        exit 2
        ;;
    esac
done
