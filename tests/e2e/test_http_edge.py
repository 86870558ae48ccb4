"""The API's edge against misbehaving and cross-site clients, on a real gunicorn: slow senders are
cut off, a stalled body is a 408 in the client's dialect, open connections are capped, CORS
follows CORS_ORIGINS, and JSON must come labelled as JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest
import requests

from tests.support.processes import Stack, start_stack

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
MAX_CONNECTIONS = 24
ALLOWED = "https://game.example"


@pytest.fixture(scope="module")
def edge(redis_server, logs_dir) -> Iterator[Stack]:
    """An API with short edge limits and an origin allowlist, and no worker: every request here
    is answered (or refused) before a job would be queued."""
    running = start_stack(redis_server.url(12), None, logs_dir, worker=False, name="edge",
                          HEADER_TIMEOUT=str(HEADER_TIMEOUT_S), BODY_TIMEOUT=str(BODY_TIMEOUT_S),
                          API_MAX_CONNECTIONS=str(MAX_CONNECTIONS), CORS_ORIGINS=ALLOWED)  # fmt: skip
    yield running
    running.stop()


def connect(stack: Stack) -> socket.socket:
    host, port = stack.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT_S + BODY_TIMEOUT_S + 10)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def head(stack: Stack, path: str, length: int, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()  # fmt: skip


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/completion", "llamacpp"),
        ("/v1/chat/completions", "openai"),
        ("/api/generate", "ollama"),
        ("/sdapi/v1/txt2img", "a1111"),
    ],
)
def test_a_stalled_body_is_a_408_in_the_dialects_shape_and_the_connection_closes(edge, path, shape):
    with connect(edge) as sock:
        sock.sendall(head(edge, path, 100) + b'{"prompt": ')  # and then nothing
        answer = read_all(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower()
    assert b"BODY_TIMEOUT" in body
    error = orjson.loads(body)
    if shape in ("llamacpp", "openai"):
        assert error["error"]["code"] == 408 or error["error"]["type"]
    elif shape == "ollama":
        assert set(error) == {"error"}
    else:
        assert error["error"] == "HTTPException" and "BODY_TIMEOUT" in error["detail"]


def test_a_body_dripped_a_byte_at_a_time_still_meets_its_deadline(edge):
    body = b'{"prompt": "' + b"x" * 200 + b'"}'
    with connect(edge) as sock:
        sock.sendall(head(edge, "/completion", len(body)))
        sock.settimeout(0.5)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        sock.settimeout(10)
        answer += read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]


def test_headers_sent_too_slowly_get_the_connection_closed(edge):
    with connect(edge) as sock:
        sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\n")
        # Dribbling more header lines does not buy more time.
        sock.settimeout(0.5)
        closed = False
        for index in range(4 * HEADER_TIMEOUT_S * 2):
            try:
                sock.sendall(f"X-Slow-{index}: y\r\n".encode())
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    assert closed


def test_an_idle_socket_is_closed_after_the_header_timeout(edge):
    with connect(edge) as sock:
        assert read_all(sock) == b""


def test_connections_over_the_cap_are_refused_with_a_503(edge):
    idle = [connect(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(edge) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After: 1" in answer and b"API_MAX_CONNECTIONS" not in answer
    finally:
        for sock in idle:
            sock.close()
    # The cap counts open connections: once they are gone, the API answers again.
    assert requests.get(edge.url("/v1/models"), timeout=10).status_code == 200


def test_cors_echoes_an_allowed_origin_with_credentials(edge):
    preflight = requests.options(
        edge.url("/completion"),
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    answer = requests.get(edge.url("/v1/models"), headers={"Origin": ALLOWED}, timeout=10)
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED and "Origin" in answer.headers["Vary"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://game.example.evil.example"])
def test_cors_tells_other_origins_nothing(edge, origin):
    preflight = requests.options(
        edge.url("/completion"), headers={"Origin": origin, "Access-Control-Request-Method": "POST"}, timeout=10
    )
    answer = requests.get(edge.url("/v1/models"), headers={"Origin": origin}, timeout=10)
    for response in (preflight, answer):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_json_sent_as_a_cross_site_simple_type_is_refused_with_415(edge, content_type):
    response = requests.post(edge.url("/completion"), data=b'{"prompt": "hi"}',
                             headers={**edge.auth, "Content-Type": content_type}, timeout=10)  # fmt: skip
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == 415 and "application/json" in error["message"]


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8"])
def test_json_labelled_as_json_or_unlabelled_is_read(edge, content_type):
    headers = {**edge.auth, **({"Content-Type": content_type} if content_type else {})}
    # Read and parsed: the next complaint is that no worker serves a model (this stack has none).
    response = requests.post(edge.url("/completion"), data=b'{"prompt": "hi"}', headers=headers, timeout=10)
    assert response.status_code == 503, response.text
    assert "model" in response.json()["error"]["message"]


def test_a_token_id_past_the_vocabulary_is_a_400_not_llama_servers_500(stack):
    # Found by the chaos suite's fuzzing: llama-server answers it with a 500 from a range check.
    response = requests.post(stack.url("/detokenize"), json={"tokens": [10**6]}, headers=stack.auth, timeout=30)
    assert response.status_code == 400, response.text
    assert "vocabulary" in response.json()["error"]["message"]
