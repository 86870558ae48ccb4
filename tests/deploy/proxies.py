"""Run deploy/'s reverse-proxy configurations, as committed, with Debian's nginx and Caddy.

Each is rendered into a temporary directory with only what a test machine must change: free
ports on 127.0.0.1 instead of 80/443, a self-signed certificate made here, the API's address.
Every substitution must find its text exactly once, so a config that drifts from what the
tests know fails here instead of silently testing something else.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.llmunity import post_raw as post_on_socket
from tests.support.processes import ROOT, Process, free_port, spawn, wait_until

NGINX_CONF = ROOT / "deploy" / "nginx" / "velesio.conf"
NGINX_STREAM_CONF = ROOT / "deploy" / "nginx" / "velesio-stream.conf"
#: Debian's libnginx-mod-stream, which /etc/nginx/modules-enabled loads on a real host.
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def tool(name: str) -> str:
    """nginx lives in /usr/sbin, which a non-login PATH may lack."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make test-deploy`, which installs it")
    return found


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 that is its own CA (clients trust exactly it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o644)  # nginx's and Caddy's workers may run as another user than the test
    return cert, key


def substitute(text: str, replacements: dict[str, str], source: Path) -> str:
    for old, new in replacements.items():
        count = text.count(old)
        if count != 1:
            raise AssertionError(f"{source.relative_to(ROOT)}: expected {old!r} once, found it {count} times")
        text = text.replace(old, new)
    return text


@dataclass
class Proxy:
    name: str
    https_port: int
    http_port: int
    cert: Path
    process: Process
    directory: Path
    #: nginx's TLS-only port (velesio-stream.conf); None for Caddy.
    stream_port: int | None = None

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def ssl_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        context.set_alpn_protocols(list(alpn))
        return context

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_nginx(api_port: int, directory: Path, logs: Path) -> Proxy:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(directory)
    https_port, http_port = free_port(), free_port()
    site = substitute(
        NGINX_CONF.read_text(),
        {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{api_port};",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
            "/etc/ssl/velesio/fullchain.pem": str(cert),
            "/etc/ssl/velesio/privkey.pem": str(key),
        },
        NGINX_CONF,
    )
    (directory / "velesio.conf").write_text(site)
    stream_port = free_port()
    stream = substitute(
        NGINX_STREAM_CONF.read_text(),
        {
            "listen 8443 ssl;": f"listen 127.0.0.1:{stream_port} ssl;",
            "proxy_pass 127.0.0.1:8000;": f"proxy_pass 127.0.0.1:{api_port};",
            "/etc/ssl/velesio/fullchain.pem": str(cert),
            "/etc/ssl/velesio/privkey.pem": str(key),
        },
        NGINX_STREAM_CONF,
    )
    (directory / "velesio-stream.conf").write_text(stream)
    # The http block around it, as Debian's /etc/nginx/nginx.conf gives one, but with every path
    # in the temporary directory.
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    (directory / "nginx.conf").write_text(
        f"""
load_module {NGINX_STREAM_MODULE};
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {directory}/velesio.conf;
}}
include {directory}/velesio-stream.conf;
"""
    )
    error_log, conf = str(directory / "error.log"), str(directory / "nginx.conf")
    command = [tool("nginx"), "-p", str(directory), "-e", error_log, "-c", conf]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = spawn(f"nginx-{https_port}", [*command, "-g", "daemon off;"], env=dict(os.environ), logs=logs)
    proxy = Proxy("nginx", https_port, http_port, cert, process, directory, stream_port)
    _wait_listening(proxy)
    return proxy


def start_caddy(api_port: int, directory: Path, logs: Path) -> Proxy:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(directory)
    https_port, http_port = free_port(), free_port()
    caddyfile = substitute(
        CADDYFILE.read_text(),
        {
            # Global options a test machine needs: no admin endpoint (one fixed port for every
            # Caddy), and the redirecting HTTP port moved off 80.
            "\tservers {": f"\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tservers {{",
            # The certificate made here instead of one from Let's Encrypt.
            "\trequest_body {": f"\ttls {cert} {key}\n\trequest_body {{",
        },
        CADDYFILE,
    )
    (directory / "Caddyfile").write_text(caddyfile)
    env = dict(os.environ)
    # The site address and upstream are the variables the committed file reads.
    env.update(
        VELESIO_DOMAIN=f"localhost:{https_port}",
        VELESIO_UPSTREAM=f"127.0.0.1:{api_port}",
        HOME=str(directory),
        XDG_DATA_HOME=str(directory / "data"),
        XDG_CONFIG_HOME=str(directory / "config"),
    )
    command = [tool("caddy"), "run", "--config", str(directory / "Caddyfile"), "--adapter", "caddyfile"]
    process = spawn(f"caddy-{https_port}", command, env=env, logs=logs)
    proxy = Proxy("caddy", https_port, http_port, cert, process, directory)
    _wait_listening(proxy)
    return proxy


def _wait_listening(proxy: Proxy) -> None:
    def up() -> bool:
        if proxy.process.popen.poll() is not None:
            raise RuntimeError(f"{proxy.name} exited:\n{proxy.process.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(up, timeout=30, what=f"{proxy.name} listening")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]


def post_raw(
    proxy: Proxy,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    source: str = "127.0.0.1",
    accept: str = "text/event-stream",
    port: int | None = None,
) -> RawResponse:
    """POST over TLS from ``source`` (any 127.0.0.0/8 address: a client the proxy can tell apart)
    and read HTTP/1.1's chunked framing ourselves, one item per chunk, as cpp-httplib hands them
    to LlamaLib: nothing between the proxy and the test may merge or split them."""
    port = port or proxy.https_port
    raw = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    sock = proxy.ssl_context().wrap_socket(raw, server_hostname="localhost")
    status, response_headers, chunks = post_on_socket(sock, f"localhost:{port}", path, body, headers, accept=accept)
    return RawResponse(status, response_headers, chunks)
