# `nix develop`: the tools the Makefile and scripts/ use, so that `make up`, `make test`, `make lock`,
# `make bench` and `make images` find them without apt (VELESIO_NO_APT tells scripts/apt.sh so).
# Not here: Debian's Bazel 4 and its rule packages, which the offline Bazel setup and
# tests/builds need (docs/builds.md); those checks skip themselves in this shell.
{ pkgs, python }:
pkgs.mkShell {
  packages = [
    python
    pkgs.uv
    pkgs.redis
    pkgs.gnumake
    pkgs.git
    pkgs.cmake
    pkgs.wrk
    pkgs.bazel-buildtools
    pkgs.buildah
    pkgs.skopeo
    pkgs.mmdebstrap
  ];
  VELESIO_NO_APT = "1";
  # pip's manylinux wheels in .venv expect the usual libstdc++.
  LD_LIBRARY_PATH = "${pkgs.stdenv.cc.cc.lib}/lib";
}
