"""HTTP downloads that survive a broken connection: resume with Range, retry, verify sha1.

A download streams into ``<file>.part``, resumes after its last byte with an HTTP Range request,
and is renamed into place only once its sha1 (computed while the bytes arrive) matches. Which
archives to fetch, and what is done with them, is :mod:`genrekit.download.setup`; unpacking them is
:mod:`genrekit.download.archives`.
"""

from __future__ import annotations

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
    import urllib3
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    own_session = session is None
    session = session or requests.Session()

    hasher = hashlib.sha1()
    have = 0
    if part.exists():
        have = part.stat().st_size
        if have:
            log.info("resuming %s: %s already downloaded, hashing them once", dest.name, format_bytes(have))
            with open(part, "rb") as fh:
                # Hash exactly the bytes counted, even if the file grows meanwhile.
                remaining = have
                while remaining and (chunk := fh.read(min(4 * MiB, remaining))):
                    hasher.update(chunk)
                    remaining -= len(chunk)

    failures = 0
    space_checked = False
    bar = None
    total: int | None = None

    def restart() -> None:
        nonlocal hasher, have
        hasher = hashlib.sha1()
        have = 0
        part.write_bytes(b"")
        if bar is not None:
            bar.reset(total=total)

    def fail(why: str) -> None:
        nonlocal failures
        failures += 1
        if failures > retries:
            raise DownloadError(
                f"{url}: giving up after {failures} failed attempts in a row ({why}); "
                f"{format_bytes(have)} are kept in {part}: run the same command again to resume"
            )
        wait = min(max_backoff, backoff * 2 ** (failures - 1))
        log.warning(
            "%s: %s; retry %d/%d in %.3g s (from byte %d)", dest.name, why, failures, retries, wait, have
        )
        time.sleep(wait)

    try:
        while True:
            # identity: a gzip-encoding server would make byte offsets meaningless for Range.
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                response = session.get(url, headers=headers, stream=True, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                fail(f"connection failed: {type(exc).__name__}")
                continue
            with response:
                status = response.status_code
                if status == 404:
                    raise _not_found(url)
                if status == 416 and have:
                    _, size = _parse_content_range(response.headers.get("Content-Range"))
                    if size == have:  # the .part already holds every byte
                        total = size
                        break
                    log.warning("%s: the server refused to resume at byte %d; starting over", dest.name, have)
                    restart()
                    fail("range not satisfiable")
                    continue
                if status in _RETRY_STATUS:
                    fail(f"HTTP {status} {response.reason}")
                    continue
                if status not in (200, 206):
                    raise DownloadError(f"{url}: HTTP {status} {response.reason}")
                if status == 206:
                    start, total = _parse_content_range(response.headers.get("Content-Range"))
                    if start != have:
                        log.warning(
                            "%s: the server resumed at byte %s, not %d; starting over", dest.name, start, have
                        )
                        restart()
                        fail("wrong range")
                        continue
                else:
                    if have:
                        log.warning("%s: the server ignored the Range request; starting over", dest.name)
                        restart()
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if not space_checked and total is not None:
                    check_free_space(
                        dest.parent,
                        (total - have) + total * extract_factor,
                        f"downloading{' and extracting' if extract_factor else ''} {dest.name}",
                    )
                    space_checked = True
                if bar is None:
                    bar = tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=dest.name,
                        disable=not progress,
                    )
                received = 0
                try:
                    with open(part, "ab") as fh:
                        for chunk in _body_chunks(response, chunk_size):
                            fh.write(chunk)
                            hasher.update(chunk)
                            have += len(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                    if received:
                        failures = 0
                    fail(f"connection lost ({type(exc).__name__})")
                    continue
                if total is not None and have < total:
                    if received:
                        failures = 0
                    fail(f"connection closed at byte {have} of {total}")
                    continue
                break
    finally:
        if bar is not None:
            bar.close()
        if own_session:
            session.close()

    digest = hasher.hexdigest()
    if expected_sha1 and digest != expected_sha1.lower():
        bad = dest.with_name(dest.name + ".sha1-mismatch")
        os.replace(part, bad)
        raise ChecksumError(
            f"{dest.name}: sha1 {digest} is not the expected {expected_sha1}; the file was kept as "
            f"{bad}: delete it and run the same command again to download it afresh"
        )
    os.replace(part, dest)
    return digest


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
