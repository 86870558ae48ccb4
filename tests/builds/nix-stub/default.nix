# `import nixpkgs { system; config; }`, as with the real nixpkgs.
{
  system,
  config ? { },
}:
let
  # A real derivation built by /bin/sh (no PATH in a Nix build) that writes what it stands for as
  # JSON; `passthru` stays visible to `nix eval`, as on a nixpkgs package.
  stub =
    name: recorded:
    let
      drv = derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          "printf '%s\\n' \"$recorded\" > $out"
        ];
        recorded = builtins.toJSON recorded;
      };
    in
    drv // { passthru = recorded; };

  tool = name: stub name { stub = name; };

  pythonPackages = {
    pip = tool "pip";
    setuptools = tool "setuptools";
    wheel = tool "wheel";
  };

  llama-cpp =
    let
      build =
        args:
        assert args.cudaSupport -> config.allowUnfree or false || throw "CUDA is unfree: set config.allowUnfree";
        stub (if args.cudaSupport then "llama-cpp-cuda" else "llama-cpp") args
        // {
          override = changes: build (args // changes);
        };
    in
    build { cudaSupport = false; };

  pkgs = {
    callPackage =
      file: args:
      let
        f = import file;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // args);

    python311 = tool "python3.11" // {
      pythonVersion = "3.11";
      pkgs = pythonPackages;
      withPackages = select: stub "python3.11-env" { packages = select pythonPackages; };
    };

    fetchurl =
      { name, url, sha256 }:
      assert builtins.match "[0-9a-f]{64}" sha256 != null || throw "fetchurl ${url}: sha256 is not hex";
      stub name { inherit url sha256; };

    runCommand = name: env: script: stub name { inherit env script; };

    stdenv = {
      mkDerivation = attrs: stub "${attrs.pname}-${attrs.version}" (builtins.removeAttrs attrs [ "passthru" ]) // attrs.passthru or { };
      cc.cc.lib = tool "gcc-lib";
    };

    # The script writeShellApplication would write (without its shellcheck), as $out/bin/NAME.
    writeShellApplication =
      {
        name,
        text,
        runtimeInputs ? [ ],
      }:
      derivation {
        inherit name system text;
        builder = "/bin/sh";
        path = builtins.concatStringsSep ":" (map (input: "${input}/bin") runtimeInputs);
        args = [
          "-c"
          ''
            /bin/mkdir -p $out/bin
            printf '#!/bin/sh\nexport PATH="%s:$PATH"\n%s\n' "$path" "$text" > $out/bin/$name
            /bin/chmod +x $out/bin/$name
          ''
        ];
      };

    dockerTools = {
      buildLayeredImage = args: stub "${args.name}-${args.tag}.tar.gz" args;
      fakeNss = tool "fake-nss" // {
        override = args: stub "fake-nss" args;
      };
    };

    mkShell = args: stub "nix-shell" args;

    inherit llama-cpp;
    autoPatchelfHook = tool "auto-patchelf-hook";
    redis = tool "redis";
    curl = tool "curl";
    uv = tool "uv";
    gnumake = tool "gnumake";
    git = tool "git";
    cmake = tool "cmake";
    wrk = tool "wrk";
    bazel-buildtools = tool "bazel-buildtools";
    buildah = tool "buildah";
    skopeo = tool "skopeo";
    mmdebstrap = tool "mmdebstrap";
  };
in
pkgs
