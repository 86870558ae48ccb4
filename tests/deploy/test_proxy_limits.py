"""The limits in deploy/'s proxy configurations against velesio's own, read from the files: a
proxy must let velesio be the one that refuses a body or ends a job, in the client's error shape.
(A live check of a 660-s silence would take 11 minutes; test_proxies.py runs a long answer.)"""

from __future__ import annotations

import re

from tests.support.processes import ROOT
from velesio_core.settings import Settings

DEFAULTS = Settings.from_env({})
#: The longest a whole answer may be silent: a wait for a worker, then the whole run.
LONGEST_SILENCE_S = DEFAULTS.job_deadline_s + DEFAULTS.job_timeout_s


def nginx_seconds(text: str, directive: str) -> float:
    (value,) = re.findall(rf"^\s*{directive} (\d+)s;", text, re.M)
    return float(value)


def test_nginx_waits_longer_than_velesio_and_takes_larger_bodies():
    site = (ROOT / "deploy/nginx/velesio.conf").read_text()
    stream = (ROOT / "deploy/nginx/velesio-stream.conf").read_text()
    assert nginx_seconds(site, "proxy_read_timeout") > LONGEST_SILENCE_S
    assert nginx_seconds(site, "proxy_send_timeout") > LONGEST_SILENCE_S
    assert nginx_seconds(stream, "proxy_timeout") > LONGEST_SILENCE_S
    (megabytes,) = re.findall(r"^\s*client_max_body_size (\d+)m;", site, re.M)
    assert int(megabytes) * 1024 * 1024 > DEFAULTS.max_body_bytes
    assert re.search(r"^\s*proxy_buffering off;", site, re.M)


def test_caddy_sets_no_timeout_that_could_cut_a_job_and_takes_larger_bodies():
    caddyfile = (ROOT / "deploy/caddy/Caddyfile").read_text()
    # Only these, which end before a request is read or after a connection is idle between
    # requests; read_body, write, read_timeout or write_timeout would bound a job's silence.
    timeouts = set(re.findall(r"^\s*(read_header|idle|read_body|write|read_timeout|write_timeout|dial_timeout)\b",
                              caddyfile, re.M))  # fmt: skip
    assert timeouts == {"read_header", "idle", "dial_timeout"}
    (megabytes,) = re.findall(r"^\s*max_size (\d+)MB$", caddyfile, re.M)
    assert int(megabytes) * 1000 * 1000 > DEFAULTS.max_body_bytes
    assert re.search(r"^\s*flush_interval -1$", caddyfile, re.M)
