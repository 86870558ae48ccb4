#!/usr/bin/env bash
# The Debian 12 root filesystem that both images start from, made by mmdebstrap straight from
# Debian's archive (no registry, no Docker): python3, the C++ runtime llama-server links against,
# the non-root user that runs the services (uid 10001, written directly: no login tools needed),
# and no docs, man pages or locales.
#
#   images/base.sh OUTPUT.tar
#
# Timestamps are clamped to a fixed SOURCE_DATE_EPOCH, so two runs against the same state of
# Debian's archive give byte-identical tarballs. images/build.sh caches the result, keyed by this
# file's contents, so that the images' digests stay put while the archive moves on.
set -euo pipefail

# Fixed, not the commit's time: one cached base serves many commits. (2025-01-01T00:00:00Z)
export SOURCE_DATE_EPOCH=1735689600

mmdebstrap --quiet --mode=root --variant=essential --include=python3,libstdc++6,libgomp1 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='echo "velesio:x:10001:10001:velesio:/home/velesio:/usr/sbin/nologin" >> "$1/etc/passwd"' \
    --customize-hook='echo "velesio:x:10001:" >> "$1/etc/group"' \
    --customize-hook='mkdir -p "$1/home/velesio" && chown 10001:10001 "$1/home/velesio"' \
    bookworm "$1" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
