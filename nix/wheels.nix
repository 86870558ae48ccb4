# The wheels that pip needs to install `requirementsFile` (an export of uv.lock: name==version
# lines) with CPython `pythonVersion` on `system`, as a list of { name, storeName, url, sha256 }:
# every compatible file of each pinned version in uv.lock, which records their URLs and sha256s.
# pip, reading the same requirements file, then picks exactly one per package and checks its hash
# again. `name` is the wheel's real file name (pip parses it); `storeName` is the same made legal
# for the Nix store, which refuses the `!` of a version epoch (PyPI's URLs write it %21).
# Builtins only, so tests/builds evaluates it against the real lock files without nixpkgs.
{
  lockFile,
  requirementsFile,
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

  # PyPI's URLs escape `!` (version epochs) and `+` (local versions).
  fileNameOf = url: builtins.replaceStrings [ "%21" "%2B" "%2b" ] [ "!" "+" "+" ] (baseNameOf url);
  storeNameOf =
    fileName:
    builtins.concatStringsSep "" (
      builtins.genList (
        i:
        let
          char = builtins.substring i 1 fileName;
        in
        if match "[A-Za-z0-9+._?=-]" char != null then char else "_"
      ) (builtins.stringLength fileName)
    );
  sha256Of = hash: elemAt (match "sha256:([0-9a-f]{64})" hash) 0;

  # "name==version" of every pin in the requirements file.
  pins = map (groups: "${elemAt groups 0}==${elemAt groups 1}") (
    filter (groups: groups != null) (
      map (match "([a-z0-9][a-z0-9._-]*)==([^ ;\\]+).*") (parts "\n" (builtins.readFile requirementsFile))
    )
  );
  pinned = package: builtins.elem "${package.name}==${package.version}" pins;
in
concatMap (
  package:
  map
    (wheel: rec {
      name = fileNameOf wheel.url;
      storeName = storeNameOf name;
      inherit (wheel) url;
      sha256 = sha256Of wheel.hash;
    })
    (filter (wheel: compatible (fileNameOf wheel.url)) (package.wheels or [ ]))
) (filter pinned (builtins.fromTOML (builtins.readFile lockFile)).package)
