# velesio's entry points. Every target installs what it needs first (scripts/bootstrap.sh).
.PHONY: up test test-fast test-deploy test-browser bench lint docs install clean monitoring chaos

VENV := .venv/bin

install:
	@scripts/bootstrap.sh

up: install
	@$(VENV)/velesio-stack

# The monitoring tests run a real Prometheus against the real services and exporters.
# tests/deploy and tests/browser need tools of their own: make test-deploy, make test-browser.
test:
	@VELESIO_APT="prometheus prometheus-redis-exporter prometheus-node-exporter" scripts/bootstrap.sh
	@$(VENV)/pytest --ignore=tests/deploy --ignore=tests/browser

# deploy/ for real (docs/deploy.md): Debian's nginx and Caddy with TLS in front of the stack,
# the compose file against the Compose schema, the systemd units through systemd-analyze.
test-deploy:
	@VELESIO_APT="nginx libnginx-mod-stream caddy curl openssl systemd" scripts/bootstrap.sh
	@$(VENV)/pytest tests/deploy

# The fast layer alone: every route and codec in-process over a fake model, no Redis, no
# llama-server (tests/fast). `make test` runs it too.
test-fast: install
	@$(VENV)/pytest -q tests/fast

# The console (/ui) in headless Chromium, Debian's, against a real stack; each view's screenshot
# is copied to $VELESIO_SCREENSHOTS (default /tmp/velesio-console-screenshots).
test-browser:
	@VELESIO_APT="chromium fonts-dejavu-core" scripts/bootstrap.sh
	@VELESIO_BROWSER_TESTS=1 $(VENV)/pytest tests/browser

bench:
	@VELESIO_APT=wrk scripts/bootstrap.sh
	@$(VENV)/python bench/run.py

# Faults under load (Redis failover and restart, dropped clients, slow-socket floods, fuzzing):
# a few minutes, bounded by CHAOS_TIMEOUT; the figures go to bench/RESULTS.md.
CHAOS_TIMEOUT ?= 900
chaos:
	@VELESIO_APT=iproute2 scripts/bootstrap.sh
	@VELESIO_CHAOS=1 timeout --kill-after=30 $(CHAOS_TIMEOUT) $(VENV)/pytest -p no:cacheprovider tests/chaos

# Render Prometheus, alert rules and Grafana provisioning from velesio_core.monitoring.
monitoring: install
	@$(VENV)/velesio-monitoring monitoring

# Style, then types: mypy --strict over the three packages, every module of them.
lint: install
	@$(VENV)/ruff check libs services tests bench images tools
	@$(VENV)/ruff format --check libs services tests bench images tools
	@$(VENV)/mypy

# The library's reference and guides (mkdocs.yml, docs/library/), generated from the docstrings
# with mkdocstrings; --strict makes every warning (a broken reference, a bad docstring) an error.
docs: install
	@$(VENV)/mkdocs build --strict --quiet

clean:
	rm -rf .venv .pytest_cache .hypothesis .mypy_cache site

# Reproducible builds (docs/builds.md): the hash lock, the Bazel graph, the OCI images, and the
# checks of all of them (with the Nix flake's) that this machine can run.
.PHONY: lock bazel-test images check-builds

lock:
	@scripts/lock.sh

bazel-test: install
	@scripts/build-tools.sh bazel
	@bazel test //...

images: install
	@scripts/build-tools.sh images
	@images/build.sh

check-builds: install
	@$(VENV)/pytest tests/builds
