# Everything the flake gives for one system: packages, apps, images, the devShell and checks.
{
  pkgs,
  system,
  revision,
}:
let
  version = "0.1.0";
  # The Python the project is tested with (Debian 12's 3.11), not nixpkgs' default python3.
  python = pkgs.python311;

  velesio = pkgs.callPackage ./python-env.nix { inherit python system version; };

  # llama.cpp's server from nixpkgs: the plain build for laptops (the stack), and CUDA for the
  # worker that GPU machines run. The worker finds it through LLAMA_SERVER_BIN.
  llama-server = pkgs.llama-cpp;
  llama-server-cuda = pkgs.llama-cpp.override { cudaSupport = true; };

  worker =
    name: llama:
    pkgs.writeShellApplication {
      inherit name;
      text = ''
        export LLAMA_SERVER_BIN="''${LLAMA_SERVER_BIN:-${llama}/bin/llama-server}"
        exec ${velesio}/bin/velesio-worker "$@"
      '';
    };
  velesio-worker = worker "velesio-worker" llama-server-cuda;
  velesio-worker-cpu = worker "velesio-worker-cpu" llama-server;

  # `make up` for Nix users: Redis, a CPU worker and the API, with the embedded tiny model.
  velesio-stack = pkgs.writeShellApplication {
    name = "velesio-stack";
    runtimeInputs = [ pkgs.redis ];
    text = ''
      export LLAMA_SERVER_BIN="''${LLAMA_SERVER_BIN:-${llama-server}/bin/llama-server}"
      exec ${velesio}/bin/velesio-stack "$@"
    '';
  };

  images = import ./images.nix {
    inherit
      pkgs
      velesio
      llama-server-cuda
      version
      revision
      ;
  };

  app = program: {
    type = "app";
    inherit program;
  };
in
{
  packages = {
    default = velesio;
    inherit
      velesio
      llama-server
      llama-server-cuda
      velesio-worker
      velesio-worker-cpu
      velesio-stack
      ;
    inherit (images) api-image worker-image;
  };

  apps = {
    default = app "${velesio}/bin/velesio-api";
    api = app "${velesio}/bin/velesio-api";
    worker = app "${velesio-worker}/bin/velesio-worker";
    worker-cpu = app "${velesio-worker-cpu}/bin/velesio-worker-cpu";
    stack = app "${velesio-stack}/bin/velesio-stack";
  };

  devShells.default = import ./shell.nix { inherit pkgs python; };

  checks = import ./checks.nix {
    inherit
      pkgs
      velesio
      velesio-worker-cpu
      velesio-stack
      llama-server
      ;
  };
}
