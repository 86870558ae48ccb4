# OCI images of the API and the CUDA worker, built by nixpkgs' dockerTools: no Docker engine, and
# reproducible (fixed creation date, store paths as layers). `nix build .#api-image` gives a
# tarball for `docker load` / `skopeo copy docker-archive:result ...`.
{
  pkgs,
  velesio,
  llama-server-cuda,
  version,
  revision,
}:
let
  # The services run as this user, never root (the same uid as the Debian-based images).
  user = pkgs.dockerTools.fakeNss.override {
    extraPasswdLines = [ "velesio:x:10001:10001:velesio:/tmp:/sbin/nologin" ];
    extraGroupLines = [ "velesio:x:10001:" ];
  };
  seconds = s: s * 1000000000;

  image =
    {
      name,
      entrypoint,
      service,
      env ? [ ],
      ports ? { },
    }:
    pkgs.dockerTools.buildLayeredImage {
      inherit name;
      tag = version;
      contents = [ user ];
      # A writable /tmp: HOME, and where the services put sockets and the tiny model.
      extraCommands = "mkdir -m 1777 tmp";
      config = {
        Entrypoint = entrypoint;
        User = "10001:10001";
        Env = [
          "HOME=/tmp"
          "PYTHONUNBUFFERED=1"
        ] ++ env;
        ExposedPorts = ports;
        Labels = {
          "org.opencontainers.image.source" = "https://github.com/velesio/velesio";
          "org.opencontainers.image.revision" = revision;
          "org.opencontainers.image.version" = version;
          "org.opencontainers.image.title" = name;
        };
        Healthcheck = {
          Test = [
            "CMD"
            "${velesio}/bin/python"
            "${velesio}/share/velesio/healthcheck.py"
            service
          ];
          Interval = seconds 30;
          Timeout = seconds 5;
          StartPeriod = seconds 60;
          Retries = 3;
        };
      };
    };
in
{
  api-image = image {
    name = "velesio-api";
    service = "api";
    entrypoint = [ "${velesio}/bin/velesio-api" ];
    env = [ "API_HOST=0.0.0.0" ];
    ports."8000/tcp" = { };
  };

  worker-image = image {
    name = "velesio-worker-cuda";
    service = "worker";
    entrypoint = [ "${velesio}/bin/velesio-worker" ];
    env = [
      "LLAMA_SERVER_BIN=${llama-server-cuda}/bin/llama-server"
      "GPU_LAYERS=99"
    ];
  };
}
