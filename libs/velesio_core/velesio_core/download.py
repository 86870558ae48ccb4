"""Fetch model files a worker needs, safely: ``velesio-download``, and what a worker does at start.

The seed's variables say what to fetch: MODEL_URL (the GGUF, to MODEL_PATH), SD_MODEL_URL (a
checkpoint, to models/image/models/Stable-diffusion/), LORA_URL and VAE_URL (to the Lora/ and VAE/
folders). A file is fetched only when it is missing, and:

- into ``.<name>.part`` beside it, renamed into place only once complete and verified, so a
  half-written file is never taken for a model;
- an interrupted transfer resumes from the part file with an HTTP ``Range`` request (a server
  that ignores it answers 200, and the transfer starts over);
- with a sha256 to check (``<VAR>_SHA256``, or ``#sha256=<hex>`` at the end of the URL), a
  mismatch deletes the file and fails, and the digest is kept beside the file (``.sha256``) so
  nobody hashes gigabytes again (digests.py);
- under an exclusive lock (``.<name>.lock``, ``flock``), so two workers sharing a volume never
  fetch the same file twice: the second waits, then finds it there;
- transient failures (connection errors, timeouts, 429 and 5xx) are retried with exponential
  backoff; 404, 401/403, a checksum mismatch or a full disk fail at once with one line;
- ``DOWNLOAD_TOKEN`` (or ``HF_TOKEN``) is sent as ``Authorization: Bearer`` to the URL's own host
  only, never to hosts it redirects to (Hugging Face redirects gated files to signed CDN URLs);
- progress is a bar on a terminal, and a line every few seconds in a log. No log line ever
  carries the token or a URL's query string (signed URLs hold credentials there).
"""

from __future__ import annotations

import argparse
import contextlib
import email.message
import errno
import fcntl
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from .digests import sha256_of, write_sidecar
from .settings import Settings, SettingsError, is_sha256, load_or_exit

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_TIMEOUT_S = 30
_LOG_EVERY_S = 10.0
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(Exception):
    """A download that cannot succeed by retrying. ``str()`` is one line."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        super().__init__(f"{variable}: {problem}; {fix}")
        self.variable, self.problem, self.fix = variable, problem, fix

    def as_settings_error(self) -> SettingsError:
        return SettingsError(self.variable, self.problem, self.fix)


class _Transient(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """One file to have: where it comes from, where it goes, and how to check it."""

    variable: str
    url: str
    #: The file itself, or a folder to put it in under the name the URL gives.
    destination: Path
    sha256: str | None = None

    @property
    def into_folder(self) -> bool:
        return self.destination.suffix == "" or self.destination.is_dir()


def targets(settings: Settings) -> list[Target]:
    """What the worker's settings ask it to have."""
    wanted = [
        ("MODEL_URL", settings.model_url, settings.model_path, settings.model_sha256, settings.llm_backend is not None),
        ("SD_MODEL_URL", settings.sd_model_url, settings.sd_checkpoints_dir, settings.sd_model_sha256, settings.run_sd),
        ("LORA_URL", settings.lora_url, settings.sd_lora_dir, settings.lora_sha256, settings.run_sd),
        ("VAE_URL", settings.vae_url, settings.sd_vae_dir, settings.vae_sha256, settings.run_sd),
    ]
    return [Target(variable, url, destination, sha) for variable, url, destination, sha, used in wanted if url and used]


def fetch_missing(settings: Settings, *, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch every missing file the settings name; return their paths (fetched or already there)."""
    return [fetch(target, token=settings.download_token, progress=progress) for target in targets(settings)]


def fetch(
    target: Target,
    *,
    token: str | None = None,
    retries: int = 6,
    backoff_s: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Have ``target``'s file: return its path, downloading it first if it is missing."""
    url, fragment_sha = _split_fragment(target.url)
    expected = (target.sha256 or fragment_sha or "").lower() or None
    if target.into_folder:
        target.destination.mkdir(parents=True, exist_ok=True)
        name = _name_from_url(url) or _name_from_server(target, url, token)
        path = target.destination / name
    else:
        path = target.destination
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path
    with _exclusive(path.with_name(f".{path.name}.lock")):
        if path.exists():  # another worker fetched it while we waited for the lock
            log.info("%s is there already (fetched by another worker)", path)
            return path
        _download(target.variable, url, path, expected, token, retries, backoff_s, progress or _reporter())
    return path


def _download(
    variable: str,
    url: str,
    path: Path,
    expected: str | None,
    token: str | None,
    retries: int,
    backoff_s: float,
    report: Callable[[str], None],
) -> None:
    part = path.with_name(f".{path.name}.part")
    where = _safe_url(url)
    log.info("fetching %s from %s", path.name, where)
    attempt = 0
    while True:
        try:
            _transfer(variable, url, part, token, report, path.name)
            break
        except _Transient as error:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    variable,
                    f"download from {where} kept failing ({error})",
                    "check the network and the server, then start the worker again",
                ) from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "download of %s interrupted (%s); resuming in %.0f s (try %d of %d)",
                path.name,
                error,
                delay,
                attempt,
                retries,
            )
            time.sleep(delay)
    digest = sha256_of(part)
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            variable,
            f"{path.name} has sha256 {digest[:16]}..., expected {expected[:16]}...; the file was deleted",
            "check the URL and the expected checksum",
        )
    part.replace(path)
    write_sidecar(path, digest)
    log.info("fetched %s (%s)", path.name, _size(path.stat().st_size))


def _transfer(variable: str, url: str, part: Path, token: str | None, report: Callable[[str], None], name: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = _request(url, token)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return  # the part file is complete already
        _raise_for_status(variable, error.code, url)
        raise AssertionError("unreachable") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Transient(_reason(error)) from None
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        total = _total_size(response.headers, have)
        mode = "ab" if have else "wb"
        done = have
        meter = _Meter(report, name, total)
        try:
            with open(part, mode) as file:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as error:
                        raise _Transient(_reason(error)) from None
                    if not chunk:
                        break
                    file.write(chunk)
                    done += len(chunk)
                    meter.update(done)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DownloadError(
                    variable,
                    f"the disk holding {part.parent} is full",
                    "free some space (the partial file is kept and will resume)",
                ) from None
            raise
        meter.finish(done)
        if total is not None and done < total:
            raise _Transient(f"the connection closed after {_size(done)} of {_size(total)}")


def _raise_for_status(variable: str, status: int, url: str) -> None:
    where = _safe_url(url)
    if status == 404:
        raise DownloadError(variable, f"{where} does not exist (HTTP 404)", "check the URL")
    if status in (401, 403):
        raise DownloadError(
            variable,
            f"{where} refused the download (HTTP {status})",
            "set DOWNLOAD_TOKEN (or HF_TOKEN) to a token that may read it",
        )
    if status in _TRANSIENT_STATUS:
        raise _Transient(f"HTTP {status}")
    raise DownloadError(variable, f"{where} answered HTTP {status}", "check the URL")


def _request(url: str, token: str | None) -> urllib.request.Request:
    request = urllib.request.Request(url, headers={"User-Agent": "velesio-download"})
    if token:
        # Unredirected: the token goes to this host only, never to one it redirects to.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return request


def _name_from_url(url: str) -> str | None:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name if "." in name and not name.startswith(".") and "/" not in name else None


def _name_from_server(target: Target, url: str, token: str | None) -> str:
    """The file name from the server's Content-Disposition, for URLs such as /api/download/123."""
    request = _request(url, token)
    request.add_header("Range", "bytes=0-0")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            header = response.headers.get("Content-Disposition", "")
    except urllib.error.HTTPError as error:
        _raise_for_status(target.variable, error.code, url)
        raise AssertionError("unreachable") from None
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(
            target.variable, f"{_safe_url(url)} cannot be reached ({_reason(error)})", "check the URL and the network"
        ) from None
    message = email.message.Message()
    message["content-disposition"] = header
    name = message.get_filename()
    if not name or "/" in name or name.startswith("."):
        raise DownloadError(
            target.variable,
            "the URL names no file and the server gives no file name",
            "add the file name to the URL, or download it by hand",
        )
    return Path(name).name


def _split_fragment(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    sha = None
    if parts.fragment.startswith("sha256="):
        candidate = parts.fragment.removeprefix("sha256=")
        sha = candidate if is_sha256(candidate) else None
    return urlunsplit(parts._replace(fragment="")), sha


def _safe_url(url: str) -> str:
    """A URL fit for a log: no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _total_size(headers: email.message.Message, have: int) -> int | None:
    length = headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return error.__class__.__name__ + (f": {error}" if str(error) else "")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


class _Meter:
    def __init__(self, report: Callable[[str], None], name: str, total: int | None) -> None:
        self._report, self._name, self._total = report, name, total
        self._started = self._last = time.monotonic()

    def _line(self, done: int) -> str:
        rate = done / max(1e-6, time.monotonic() - self._started)
        if self._total:
            return f"{self._name}: {100 * done / self._total:5.1f}% of {_size(self._total)} ({_size(rate)}/s)"
        return f"{self._name}: {_size(done)} ({_size(rate)}/s)"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last >= (0.2 if _is_terminal() else _LOG_EVERY_S):
            self._last = now
            self._report(self._line(done))

    def finish(self, done: int) -> None:
        self._report(self._line(done) + ("\n" if _is_terminal() else ""))


def _is_terminal() -> bool:
    return sys.stderr.isatty()


def _reporter() -> Callable[[str], None]:
    if _is_terminal():
        return lambda line: print("\r" + line, end="", file=sys.stderr, flush=True)
    return lambda line: log.info("%s", line)


def main(argv: list[str] | None = None) -> None:
    from .logs import configure_logging

    parser = argparse.ArgumentParser(
        description="Fetch a model file (resumable, verified, locked). With no URL: every file the worker's "
        "settings name (MODEL_URL, SD_MODEL_URL, LORA_URL, VAE_URL) that is missing."
    )
    parser.add_argument("url", nargs="?", help="what to fetch; a #sha256=<hex> fragment is checked")
    parser.add_argument("destination", nargs="?", type=Path, help="a file, or a folder to put it in")
    parser.add_argument("--sha256", help="the expected sha256")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.url:
            if args.destination is None:
                parser.error("give a destination for the URL")
            token = os.environ.get("DOWNLOAD_TOKEN") or os.environ.get("HF_TOKEN") or None
            paths = [fetch(Target("url", args.url, args.destination, args.sha256), token=token)]
        else:
            paths = fetch_missing(load_or_exit())
    except DownloadError as error:
        print(f"\nvelesio: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
