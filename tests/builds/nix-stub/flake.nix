{
  # Stands in for nixpkgs in tests/builds (nixpkgs cannot be fetched on the CI machine):
  # `nix flake check --override-input nixpkgs path:<this directory>`. It has exactly the names
  # velesio's flake uses, each a tiny real derivation that records what it was asked for, so the
  # flake's wiring can be evaluated, built and inspected. It proves nothing about nixpkgs itself.
  description = "A stub of the nixpkgs attributes velesio's flake uses";
  outputs =
    { self }:
    {
      lib = import ./lib.nix;
    };
}
