"""Client load while faults happen, and what became of every request.

Each request ends in exactly one outcome:

- ``answered``: a complete answer (a whole JSON answer, or a stream through its final chunk);
- ``clean_error``: an error the client's library understands: a status with a JSON error body in
  the dialect's shape, a stream that ends with the dialect's error event, or a connection
  refused before anything was sent (the client knows at once that nothing happened);
- ``lost``: cut with no error: a reset or closed connection mid-answer, a stream that stops
  before its final chunk, a body that is not the dialect's (gunicorn's text/plain 500);
- ``hung``: no end within :data:`HUNG_AFTER_S`;
- ``duplicated``: a stream that delivered more tokens than its final chunk says were generated,
  i.e. a job's output sent twice (a job run again after its first output reached the client).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import requests

from .cluster import Cluster

#: A request with no end after this long is hung: the API's own bounds (JOB_DEADLINE, then
#: JOB_TIMEOUT from the first event, cluster.py) all end a request well before.
HUNG_AFTER_S = 40.0
OUTCOMES = ("answered", "clean_error", "lost", "hung", "duplicated")
N_PREDICT = 12
#: The model OpenAI's clients must name: the tiny GGUF's, named after its file (cluster.py).
MODEL = "tiny"


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    ended: float
    request: str
    detail: str = ""


def _classify_error_response(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "lost", f"{response.status_code} {response.headers.get('content-type')}: {response.text[:80]!r}"
    if isinstance(body, dict) and "error" in body:
        return "clean_error", f"{response.status_code} {str(body['error'])[:160]}"
    return "lost", f"{response.status_code} without an error body: {response.text[:80]!r}"


def completion_stream(session: requests.Session, base_url: str, auth: dict[str, str], prompt: str) -> tuple[str, str]:
    """llama.cpp's /completion as LLM for Unity streams it."""
    body = {"prompt": prompt, "n_predict": N_PREDICT, "stream": True, "temperature": 0}
    with session.post(
        base_url + "/completion", json=body, headers=auth, stream=True, timeout=(5, HUNG_AFTER_S)
    ) as response:
        if response.status_code != 200:
            return _classify_error_response(response)
        tokens = 0
        for line in response.iter_lines():
            if not line.startswith(b"data: "):
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                return "clean_error", f"stream error event after {tokens} tokens: {str(chunk['error'])[:160]}"
            if chunk.get("stop"):
                predicted = chunk.get("tokens_predicted", N_PREDICT)
                if tokens > predicted:
                    return "duplicated", f"{tokens} tokens streamed, {predicted} generated"
                return "answered", ""
            if chunk.get("content"):
                tokens += 1
        return "lost", "the stream ended before its final chunk"


def chat_whole(session: requests.Session, base_url: str, auth: dict[str, str], prompt: str) -> tuple[str, str]:
    """OpenAI's chat completions, whole, as the OpenAI SDK asks for them."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": N_PREDICT,
            "temperature": 0}  # fmt: skip
    response = session.post(base_url + "/v1/chat/completions", json=body, headers=auth, timeout=(5, HUNG_AFTER_S))
    if response.status_code != 200:
        return _classify_error_response(response)
    try:
        choice = response.json()["choices"][0]
    except (ValueError, KeyError, IndexError):
        return "lost", f"not a chat completion: {response.text[:80]!r}"
    return ("answered", "") if choice.get("finish_reason") else ("lost", "no finish_reason")


REQUESTS = {"completion-stream": completion_stream, "chat-whole": chat_whole}


def run_one(session: requests.Session, base_url: str, auth: dict[str, str], kind: str, prompt: str) -> Outcome:
    started = time.time()
    try:
        result, detail = REQUESTS[kind](session, base_url, auth, prompt)
    except requests.exceptions.ConnectTimeout:
        result, detail = "clean_error", "connect timeout"
    except requests.exceptions.ConnectionError as error:
        # Refused before a byte was sent (an API process restarting) is a clean "try again";
        # anything after the request went out is a cut.
        refused = "refused" in str(error).lower() or "newconnectionerror" in repr(error).lower()
        result, detail = ("clean_error", "connection refused") if refused else ("lost", f"connection: {error}")
    except requests.exceptions.ReadTimeout:
        result, detail = "hung", f"no end within {HUNG_AFTER_S:g} s"
    except requests.exceptions.ChunkedEncodingError as error:
        result, detail = "lost", f"cut mid-answer: {error}"
    return Outcome(result, started, time.time(), kind, detail)


@dataclass
class Load:
    """``clients`` threads sending requests to the APIs in turn, until :meth:`stop`."""

    cluster: Cluster
    clients: int = 6
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), name=f"chaos-client-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=HUNG_AFTER_S + 10)
        with self._lock:
            return list(self.outcomes)

    def answered_since(self, moment: float) -> int:
        with self._lock:
            return sum(outcome.kind == "answered" and outcome.started >= moment for outcome in self.outcomes)

    def _client(self, index: int) -> None:
        session = requests.Session()
        kinds = itertools.cycle(REQUESTS)
        apis = itertools.cycle(self.cluster.apis[index % len(self.cluster.apis) :] + self.cluster.apis)
        for number in itertools.count():
            if self._stop.is_set():
                break
            outcome = run_one(session, next(apis).base_url, self.cluster.auth, next(kinds), f"client {index} n{number}")
            with self._lock:
                self.outcomes.append(outcome)
            if outcome.kind != "answered":
                session.close()  # a connection that saw a fault is not reused
                session = requests.Session()
                time.sleep(0.05)
        session.close()


@dataclass
class Tally:
    counts: Counter
    recovery_s: float | None
    examples: dict[str, str]

    @classmethod
    def of(cls, outcomes: list[Outcome], *, recovery_from: float | None) -> Tally:
        counts = Counter({kind: 0 for kind in OUTCOMES})
        examples: dict[str, str] = {}
        for outcome in outcomes:
            counts[outcome.kind] += 1
            if outcome.kind != "answered":
                examples.setdefault(outcome.kind, f"{outcome.request}: {outcome.detail}")
        return cls(counts, recovery_time(outcomes, recovery_from), examples)


def recovery_time(outcomes: list[Outcome], since: float | None) -> float | None:
    """From ``since`` (the fault, or the moment the faulty part was back) until the end of the
    last request that was not answered; 0 when none failed. None: nothing to measure from."""
    if since is None:
        return None
    failed_ends = [outcome.ended for outcome in outcomes if outcome.kind != "answered" and outcome.ended >= since]
    return max(0.0, max(failed_ends) - since) if failed_ends else 0.0
