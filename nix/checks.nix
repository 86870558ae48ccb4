# `nix flake check` builds these with the real nixpkgs: each runs what it names in the build
# sandbox (loopback only) and fails the check on any error.
{
  pkgs,
  velesio,
  velesio-worker-cpu,
  velesio-stack,
  llama-server,
}:
{
  # The API refuses to start without tokens, with its one-line message and exit status 2.
  api-needs-tokens = pkgs.runCommand "velesio-api-needs-tokens" { } ''
    status=0
    ${velesio}/bin/velesio-api 2> err || status=$?
    cat err
    [ "$status" = 2 ] && grep -q '^velesio: API_TOKENS: ' err
    touch $out
  '';

  # nixpkgs' llama-server runs.
  llama-server-runs = pkgs.runCommand "llama-server-runs" { } ''
    ${llama-server}/bin/llama-server --version
    touch $out
  '';

  # The whole stack as `nix run .#stack` starts it (Redis, a CPU worker, the API, the tiny
  # model), answering /health and a completion.
  stack-answers = pkgs.runCommand "velesio-stack-answers" { nativeBuildInputs = [ pkgs.curl ]; } ''
    export HOME=$TMPDIR API_TOKENS=nix-check API_PORT=18000
    cd $TMPDIR
    ${velesio-stack}/bin/velesio-stack > stack.log 2>&1 &
    for _ in $(seq 300); do
      curl -sf http://127.0.0.1:18000/health > /dev/null && break
      sleep 1
    done
    curl -sf http://127.0.0.1:18000/completion -H 'Authorization: Bearer nix-check' -H 'Content-Type: application/json' \
      -d '{"prompt": "Hello", "n_predict": 4}' | grep -q '"content"' || { cat stack.log; exit 1; }
    kill %1
    wait || true
    touch $out
  '';

  # The CPU worker wrapper refuses a bad setting the same way (it reached velesio-worker).
  worker-wrapper = pkgs.runCommand "velesio-worker-wrapper" { } ''
    status=0
    GPU_LAYERS=lots ${velesio-worker-cpu}/bin/velesio-worker-cpu 2> err || status=$?
    cat err
    [ "$status" = 2 ] && grep -q '^velesio: GPU_LAYERS: ' err
    touch $out
  '';
}
