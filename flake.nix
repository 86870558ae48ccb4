{
  description = "velesio: a self-hosted AI inference gateway (API, workers, llama-server)";

  # flake.lock pins a published nixos-25.05 revision with its narHash (docs/builds.md says which
  # and where it comes from). `nix flake update` moves it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      perSystem = nixpkgs.lib.genAttrs systems (
        system:
        import ./nix {
          inherit system;
          pkgs = import nixpkgs {
            inherit system;
            # The CUDA toolkit behind the worker's llama-server is unfree.
            config.allowUnfree = true;
          };
          revision = self.rev or "dirty";
        }
      );
      each = output: builtins.mapAttrs (_: outputs: outputs.${output}) perSystem;
    in
    {
      packages = each "packages";
      apps = each "apps";
      devShells = each "devShells";
      checks = each "checks";
    };
}
