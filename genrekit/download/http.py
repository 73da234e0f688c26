"""HTTP downloads that survive a broken connection: resume with Range, retry, verify sha1.

A download streams into ``<file>.part``, resumes after its last byte with an HTTP Range request,
and is renamed into place only once its sha1 (computed while the bytes arrive) matches. Which
archives to fetch, and what is done with them, is :mod:`genrekit.download.setup`; unpacking them is
:mod:`genrekit.download.archives`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import ChecksumError, DownloadError
from genrekit.fileio import MiB, check_free_space, format_bytes

log = logging.getLogger(__name__)

# The FMA repository README (rc1) names this server; FMA_BASE_URL or --base_url point elsewhere.
BASE_URL = "https://os.unil.cloud.switch.ch/fma/"


BASE_URL_ENV = "FMA_BASE_URL"

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/N`` header; None where unknown."""
    match = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _not_found(url: str) -> DownloadError:
    return DownloadError(
        f"{url} was not found (HTTP 404); check --base_url or ${BASE_URL_ENV} "
        f"(the archive must be at <base_url>/{url.rsplit('/', 1)[-1]})"
    )


def _body_chunks(response: Any, chunk_size: int) -> Iterable[bytes]:
    """The body's bytes as they arrive, undecoded.

    ``read1`` hands over whatever has arrived; ``iter_content`` fills a whole chunk first and
    loses that partial chunk when the connection breaks, so it is only the fallback for urllib3
    versions without ``read1``.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(chunk_size)
        return
    while chunk := raw.read1(chunk_size, decode_content=False):
        yield chunk


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_sha1: str | None = None,
    extract_factor: float = 0.0,
    retries: int = 8,
    backoff: float = 2.0,
    max_backoff: float = 120.0,
    timeout: float = 60.0,
    chunk_size: int = MiB,
    progress: bool = True,
    session: Any = None,
) -> str:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, and return the file's sha1.

    An existing ``.part`` file is hashed once and the download resumes after its last byte with an
    HTTP Range request; a server that ignores Range sends the whole file, and the download starts
    over cleanly. Connection errors and 5xx answers are retried with exponential backoff
    (``retries`` failures in a row without any byte received; any progress resets the count).
    The sha1 is computed while the bytes arrive and checked before ``dest.part`` is renamed to
    ``dest``; on a mismatch the file is kept as ``dest.sha1-mismatch``.

    Parameters
    ----------
    url : str
        The file to fetch.
    dest : path-like
        Where the complete, verified file ends up.
    expected_sha1 : str, optional
        The sha1 the file must have; None skips the check (the sha1 is still returned).
    extract_factor : float
        Extra free space needed per byte of the file (its extracted size), checked as soon as
        the server tells the file's size.
    retries, backoff, max_backoff : int, float, float
        Failures in a row tolerated, first wait in seconds (doubled each time), longest wait.
    timeout : float
        Seconds without any answer or any byte before a connection counts as failed.
    chunk_size : int
        Bytes read per write.
    progress : bool
        Show a tqdm bar (bytes, speed, ETA).
    session : requests.Session, optional
        Session to use (a new one by default).

    Returns
    -------
    str
        The sha1 of the downloaded file.

    Raises
    ------
    DownloadError
        HTTP 404 or another client error, too many failures in a row, not enough disk space.
    ChecksumError
        The file's sha1 is not ``expected_sha1``.
    """
    import requests

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    session = session or requests.Session()
    transfer = _Transfer(url, dest, _Retry(retries, backoff, max_backoff), extract_factor, progress)
    transfer.hash_part()
    try:
        while not transfer.attempt(session, timeout, chunk_size):
            pass
    finally:
        if transfer.bar is not None:
            transfer.bar.close()
        if own_session:
            session.close()
    digest = transfer.hasher.hexdigest()
    if expected_sha1 and digest != expected_sha1.lower():
        raise set_aside_mismatch(transfer.part, dest, digest, expected_sha1)
    os.replace(transfer.part, dest)
    return digest


def set_aside_mismatch(path: Path, dest: Path, digest: str, expected: str) -> ChecksumError:
    """Move a file whose sha1 is wrong to ``<dest>.sha1-mismatch``; the error to raise, saying so."""
    bad = dest.with_name(dest.name + ".sha1-mismatch")
    os.replace(path, bad)
    return ChecksumError(
        f"{dest.name}: sha1 {digest} is not the expected {expected}; the file was kept as "
        f"{bad}: delete it and run the same command again to download it afresh"
    )


@dataclasses.dataclass(frozen=True)
class _Retry:
    """Failures in a row tolerated, first wait in seconds (doubled each time), longest wait."""

    retries: int
    backoff: float
    max_backoff: float


class _Transfer:
    """One download into ``<dest>.part``: the bytes so far, their sha1, the failures in a row."""

    def __init__(self, url: str, dest: Path, retry: _Retry, extract_factor: float, progress: bool) -> None:
        self.url, self.dest = url, dest
        self.part = dest.with_name(dest.name + ".part")
        self.retry = retry
        self.extract_factor = extract_factor
        self.progress = progress
        self.hasher = hashlib.sha1()
        self.have = 0  # bytes in the .part file, all hashed
        self.failures = 0
        self.space_checked = False
        self.bar: Any = None
        self.total: int | None = None

    def hash_part(self) -> None:
        """Hash what an earlier run left in the .part file, once, to resume after it."""
        if not self.part.exists():
            return
        self.have = self.part.stat().st_size
        if not self.have:
            return
        log.info(
            "resuming %s: %s already downloaded, hashing them once", self.dest.name, format_bytes(self.have)
        )
        with open(self.part, "rb") as fh:
            # Hash exactly the bytes counted, even if the file grows meanwhile.
            remaining = self.have
            while remaining and (chunk := fh.read(min(4 * MiB, remaining))):
                self.hasher.update(chunk)
                remaining -= len(chunk)

    def restart(self) -> None:
        self.hasher = hashlib.sha1()
        self.have = 0
        self.part.write_bytes(b"")
        if self.bar is not None:
            self.bar.reset(total=self.total)

    def fail(self, why: str) -> None:
        """Count a failure and wait before the next attempt; DownloadError after too many in a row."""
        self.failures += 1
        retry = self.retry
        if self.failures > retry.retries:
            raise DownloadError(
                f"{self.url}: giving up after {self.failures} failed attempts in a row ({why}); "
                f"{format_bytes(self.have)} are kept in {self.part}: run the same command again to resume"
            )
        wait = min(retry.max_backoff, retry.backoff * 2 ** (self.failures - 1))
        log.warning(
            "%s: %s; retry %d/%d in %.3g s (from byte %d)",
            self.dest.name,
            why,
            self.failures,
            retry.retries,
            wait,
            self.have,
        )
        time.sleep(wait)

    def attempt(self, session: Any, timeout: float, chunk_size: int) -> bool:
        """One request: True when the .part file holds the whole file, False to try again."""
        import requests

        # identity: a gzip-encoding server would make byte offsets meaningless for Range.
        headers = {"Accept-Encoding": "identity"}
        if self.have:
            headers["Range"] = f"bytes={self.have}-"
        try:
            response = session.get(self.url, headers=headers, stream=True, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self.fail(f"connection failed: {type(exc).__name__}")
            return False
        with response:
            complete = self._accept(response)
            if complete is not None:
                return complete
            self._check_space()
            self._open_bar()
            return self._receive(response, chunk_size)

    def _accept(self, response: Any) -> bool | None:
        """What the answer's status means: None (read its body), True (nothing left to read) or
        False (try again); raises for a missing file or another client error."""
        status = response.status_code
        if status == 404:
            raise _not_found(self.url)
        if status == 416 and self.have:
            _, size = _parse_content_range(response.headers.get("Content-Range"))
            if size == self.have:  # the .part already holds every byte
                self.total = size
                return True
            log.warning(
                "%s: the server refused to resume at byte %d; starting over", self.dest.name, self.have
            )
            self.restart()
            self.fail("range not satisfiable")
            return False
        if status in _RETRY_STATUS:
            self.fail(f"HTTP {status} {response.reason}")
            return False
        if status not in (200, 206):
            raise DownloadError(f"{self.url}: HTTP {status} {response.reason}")
        if status == 206:
            start, self.total = _parse_content_range(response.headers.get("Content-Range"))
            if start != self.have:
                log.warning(
                    "%s: the server resumed at byte %s, not %d; starting over",
                    self.dest.name,
                    start,
                    self.have,
                )
                self.restart()
                self.fail("wrong range")
                return False
            return None
        if self.have:
            log.warning("%s: the server ignored the Range request; starting over", self.dest.name)
            self.restart()
        length = response.headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        return None

    def _check_space(self) -> None:
        """Once the size is known: room for the rest of the file, and for its extraction."""
        if self.space_checked or self.total is None:
            return
        check_free_space(
            self.dest.parent,
            (self.total - self.have) + self.total * self.extract_factor,
            f"downloading{' and extracting' if self.extract_factor else ''} {self.dest.name}",
        )
        self.space_checked = True

    def _open_bar(self) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=self.total,
                initial=self.have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.dest.name,
                disable=not self.progress,
            )

    def _receive(self, response: Any, chunk_size: int) -> bool:
        """Append the body to the .part file: True when the file is whole, False to try again
        (any byte received resets the failures in a row)."""
        import requests
        import urllib3

        received = 0
        try:
            with open(self.part, "ab") as fh:
                for chunk in _body_chunks(response, chunk_size):
                    fh.write(chunk)
                    self.hasher.update(chunk)
                    self.have += len(chunk)
                    received += len(chunk)
                    self.bar.update(len(chunk))
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if received:
                self.failures = 0
            self.fail(f"connection lost ({type(exc).__name__})")
            return False
        if self.total is not None and self.have < self.total:
            if received:
                self.failures = 0
            self.fail(f"connection closed at byte {self.have} of {self.total}")
            return False
        return True


def remote_size(url: str, options: Mapping[str, Any]) -> int | None:
    """The size a server announces for ``url`` (HEAD), or None when it does not say."""
    import requests

    session = options.get("session") or requests
    try:
        response = session.head(
            url,
            headers={"Accept-Encoding": "identity"},
            allow_redirects=True,
            timeout=options.get("timeout", 60),
        )
    except requests.RequestException:
        return None
    if response.status_code == 404:
        raise _not_found(url)
    length = response.headers.get("Content-Length", "")
    return int(length) if response.ok and length.isdigit() else None
