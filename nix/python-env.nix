# velesio's three packages in one Python environment (a venv in the store), with exactly the
# dependency versions of uv.lock: each wheel is fetched by the URL and sha256 that uv.lock records
# (wheels.nix), and pip installs them from requirements/lock/nix.txt with --require-hashes, no
# index and no resolution of its own, so it checks every hash a second time and evaluates the
# environment markers as on any other install path. `pip check` then proves the set complete.
{
  stdenv,
  fetchurl,
  runCommand,
  autoPatchelfHook,
  python,
  system,
  version,
}:
let
  # Only what the packages are built from, so that editing docs or tests rebuilds nothing.
  source = builtins.path {
    name = "velesio-source";
    path = ../.;
    filter =
      path: type:
      let
        relative = builtins.substring (builtins.stringLength (toString ../.) + 1) (-1) (toString path);
        startsWith = prefix: string: builtins.substring 0 (builtins.stringLength prefix) string == prefix;
        # A wanted path, something inside it, or a directory on the way to it.
        keep = wanted: startsWith wanted relative || type == "directory" && startsWith (relative + "/") wanted;
      in
      builtins.any keep [
        "libs/velesio_core"
        "services/api"
        "services/worker"
        "requirements/lock/nix.txt"
        "images/healthcheck.py"
      ]
      && builtins.match "(.*/)?(__pycache__|[^/]*\\.egg-info|build)" relative == null;
  };

  wheels = import ./wheels.nix {
    lockFile = ../uv.lock;
    requirementsFile = ../requirements/lock/nix.txt;
    inherit (python) pythonVersion;
    inherit system;
  };
  wheelhouse = runCommand "velesio-wheelhouse" { } (
    "mkdir $out\n"
    + builtins.concatStringsSep "" (
      map (
        wheel: "ln -s ${fetchurl { inherit (wheel) url sha256; name = wheel.storeName; }} \"$out/${wheel.name}\"\n"
      ) wheels
    )
  );
  buildPython = python.withPackages (ps: [
    ps.pip
    ps.setuptools
    ps.wheel
  ]);
in
stdenv.mkDerivation {
  pname = "velesio";
  inherit version;
  src = source;

  # Binary wheels (numpy, orjson, uvloop...) link against the usual Linux libraries.
  nativeBuildInputs = [
    buildPython
    autoPatchelfHook
  ];
  buildInputs = [ stdenv.cc.cc.lib ];
  dontConfigure = true;

  buildPhase = ''
    runHook preBuild
    export HOME=$TMPDIR
    python -m pip wheel --no-index --no-deps --no-build-isolation --wheel-dir dist \
      ./libs/velesio_core ./services/api ./services/worker
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    ${python}/bin/python3 -m venv --without-pip $out
    into() { python -m pip --python $out/bin/python --no-cache-dir "$@"; }
    into install --no-index --no-deps --require-hashes --find-links ${wheelhouse} -r requirements/lock/nix.txt
    into install --no-index --no-deps dist/*.whl
    into check
    install -Dm644 images/healthcheck.py $out/share/velesio/healthcheck.py
    runHook postInstall
  '';

  passthru = { inherit wheels wheelhouse; };
  meta.mainProgram = "velesio-api";
}
