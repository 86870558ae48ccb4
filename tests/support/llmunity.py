"""The stream parsers of LLM for Unity's two client generations, ported line for line.

v2 (C#, LLMCaller.ConvertContent / LLMCharacter.MultiChatContent): on every download progress it
re-parses the *whole cumulative body*; v3 (LlamaLib's C++ ResponseConcatenator::process_chunk)
parses every HTTP chunk on its own as exactly one JSON object. See docs/clients.md, LLM for Unity: Streams.
A gateway that breaks either rule breaks that client; these functions raise where the clients do.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit


class ClientParseError(Exception):
    """What would be an exception (and a failed chat) inside the Unity client."""


def v2_parse_cumulative(body: str) -> str:
    """LLM for Unity v2: the text it shows for a (possibly partial) cumulative stream body."""
    response = body.strip()
    if not response.startswith("data: "):
        # A plain JSON body while streaming: MultiChatResult.data is null, and the C# throws.
        raise ClientParseError("stream body does not start with 'data: '")
    parts = [part for part in response.replace("\n\n", "").split("data: ") if part != ""]
    try:
        multi = json.loads('{"data": [' + ",\n".join(parts) + "]}")
    except json.JSONDecodeError as error:
        raise ClientParseError(f"JsonUtility would throw: {error}") from None
    if multi.get("data") is None:
        raise ClientParseError("MultiChatResult.data is null")
    return "".join(item.get("content") or "" for item in multi["data"]).strip()


def v3_concatenate(chunks: list[bytes]) -> tuple[str, list[int], dict]:
    """LlamaLib v2: (content, tokens, last chunk) from the HTTP chunks of a stream, one at a time."""
    content, tokens, last = "", [], {}
    for raw in chunks:
        text = raw.decode("utf-8")
        if text.startswith("data: "):
            text = text[len("data: ") :]
        text = text.rstrip("\r\n")
        if text == "[DONE]":
            break
        try:
            chunk = json.loads(text)
        except json.JSONDecodeError as error:
            raise ClientParseError(f"LlamaLib: JSON parse error in one chunk: {error}") from None
        if "error" in chunk:
            raise ClientParseError(f"LlamaLib: error chunk {chunk['error']}")
        content += chunk.get("content", "")
        if "tokens" in chunk:
            if not all(isinstance(token, int) for token in chunk["tokens"]):
                raise ClientParseError("LlamaLib: tokens must be ints")
            tokens += chunk["tokens"]
        last = chunk
    return content, tokens, last


SSE = "text/event-stream"


def post_chunks(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Iterator[bytes]]:
    """POST and read the response's HTTP/1.1 chunked framing itself, one chunk per item, as
    cpp-httplib hands chunks to LlamaLib (no library may merge or split them on our behalf)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return post_raw(sock, parts.netloc, parts.path, body, headers)


def post_raw(
    sock: socket.socket, netloc: str, path: str, body: bytes, headers: dict[str, str], *, accept: str = SSE
) -> tuple[int, dict[str, str], Iterator[bytes]]:
    """POST on a connected socket (plain or TLS) and read HTTP/1.1's framing ourselves: the status,
    the headers, and the body one item per chunk. The socket is closed once the chunks are read."""
    head = [f"POST {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {len(body)}",
            "Content-Type: application/json", f"Accept: {accept}", "Connection: close"]  # fmt: skip
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    response_headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        response_headers[name.strip().lower()] = value.strip()

    def chunks() -> Iterator[bytes]:
        try:
            if response_headers.get("transfer-encoding") != "chunked":
                length = response_headers.get("content-length")
                yield reader.read(int(length)) if length is not None else reader.read()
                return
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                if size == 0:
                    return
                data = reader.read(size)
                reader.read(2)
                yield data
        finally:
            reader.close()
            sock.close()

    return status, response_headers, chunks()
