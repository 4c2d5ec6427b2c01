"""A 64 MB ``FileService.getFile`` answer through keyshim: time, and keyshim's peak RSS."""

from __future__ import annotations

import hashlib
import http.client
import time
import xmlrpc.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from util import RssSampler, status_kb

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Fetch:
    seconds: float
    size: int
    sha256: str


def fetch(url: str, body: bytes, headers: dict[str, str]) -> Fetch:
    """POST and read the answer in 1 MiB pieces, hashing as it goes (never holding it whole)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    try:
        conn.request("POST", parts.path, body, {"Content-Type": "text/xml", **headers})
        answer = conn.getresponse()
        if answer.status != 200:
            raise RuntimeError(f"getFile via {url}: HTTP {answer.status}")
        while chunk := answer.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    finally:
        conn.close()
    return Fetch(time.perf_counter() - started, size, digest.hexdigest())


@dataclass(frozen=True)
class GetFileResult:
    direct: Fetch
    via_keyshim: Fetch
    idle_rss_kb: int
    peak_rss_kb: int
    hwm_before_kb: int
    hwm_after_kb: int
    rss_samples: int
    correct: bool

    @property
    def growth_mb(self) -> float:
        """Peak RSS during the fetch over the idle RSS just before it, in MiB."""
        return (self.peak_rss_kb - self.idle_rss_kb) / 1024


def measure(
    direct_url: str, keyshim_url: str, key: str, token: str, pid: int, expected_sha256: str
) -> GetFileResult:
    """Fetch once directly (also warms the page cache), then through keyshim while sampling
    keyshim's VmRSS every 20 ms."""
    direct = fetch(
        direct_url,
        xmlrpc.client.dumps(("keyshim", 1234), "FileService.getFile").encode(),
        {"Authorization": f"Bearer {token}"},
    )
    time.sleep(1.0)  # let the keyshim process settle before reading its idle RSS
    idle = status_kb(pid, "VmRSS")
    hwm_before = status_kb(pid, "VmHWM")
    with RssSampler(pid, interval=0.02) as sampler:
        via = fetch(
            keyshim_url, xmlrpc.client.dumps((key, 1234), "FileService.getFile").encode(), {}
        )
    return GetFileResult(
        direct=direct,
        via_keyshim=via,
        idle_rss_kb=idle,
        peak_rss_kb=sampler.peak_kb,
        hwm_before_kb=hwm_before,
        hwm_after_kb=status_kb(pid, "VmHWM"),
        rss_samples=sampler.samples,
        correct=via.sha256 == expected_sha256 == direct.sha256,
    )
