"""Download, verify and extract the FMA archives: resumable, checksummed and safe.

Downloads stream into ``<archive>.part`` (resumed with HTTP Range, sha1 computed on the fly);
archives are extracted member by member with atomic writes, then checked against their own
``checksums`` file; a completion marker makes a second run a quick no-op.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genrekit.errors import ChecksumError, DatasetError, DownloadError, UnsafeArchiveError
from genrekit.fileio import sha1_file, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30

# The FMA repository README (rc1) names this server; FMA_BASE_URL or --base_url point elsewhere.
BASE_URL = "https://os.unil.cloud.switch.ch/fma/"
BASE_URL_ENV = "FMA_BASE_URL"


@dataclass(frozen=True)
class Archive:
    """One FMA archive.

    Parameters
    ----------
    key : str
        Its name on the command line (``metadata``, ``fma_small``, ...) and its folder under
        ``<data_dir>/extracted/``.
    filename : str
        The file name on the server, e.g. ``fma_large.zip``; its stem is the zip's top folder.
    sha1 : str or None
        The published sha1 of the archive; None when unknown (then it is never checked).
    size : int
        Its nominal size in bytes (the README's rounded figure), for the disk-space check made
        before anything is downloaded.
    expansion : float
        Extracted bytes per archive byte, for the same check: MP3s barely compress, CSVs do.
    """

    key: str
    filename: str
    sha1: str | None
    size: int
    expansion: float = 1.0

    @property
    def top(self) -> str:
        """The zip's top folder, e.g. ``fma_large``."""
        return self.filename.removesuffix(".zip")


ARCHIVES: dict[str, Archive] = {
    a.key: a
    for a in (
        # The metadata CSVs compress about 4-5x; 5 is a safe upper bound for the space check.
        Archive("metadata", "fma_metadata.zip", "f0df49ffe5f2a6008d7dc83c6915b31835dfe733", 342 * MiB, 5.0),
        Archive("fma_small", "fma_small.zip", "ade154f733639d52e35e32f5593efe5be76c6d70", int(7.2 * GiB)),
        Archive("fma_medium", "fma_medium.zip", "c67b69ea232021025fca9231fc1c7c1a063ab50b", 22 * GiB),
        Archive("fma_large", "fma_large.zip", "497109f4dd721066b5ce5e5f250ec604dc78939e", 93 * GiB),
        Archive("fma_full", "fma_full.zip", "0f0ace23fbe9ba30ecb7e95f763e435ea802b8ab", 879 * GiB),
    )
}

# What each --subset choice fetches (``demo`` is handled by the script: no archive at all).
SUBSETS: dict[str, tuple[str, ...]] = {
    "metadata": ("metadata",),
    "fma_small": ("fma_small",),
    "fma_medium": ("fma_medium",),
    "fma_large": ("fma_large",),
    "fma_full": ("fma_full",),
    "all": ("metadata", "fma_large"),
}

# Audio subsets that can stand in for the default fma_large folder, largest first. fma_full is
# not among them: it holds untrimmed tracks, not the 30 s clips the toolkit is tuned for.
AUDIO_STAND_INS = ("fma_large", "fma_medium", "fma_small")
TRACK_COUNTS = {"fma_small": 8_000, "fma_medium": 25_000, "fma_large": 106_574, "fma_full": 106_574}

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


# --- Small helpers -----------------------------------------------------------------------------


def resolve_base_url(base_url: str | None = None) -> str:
    """The base URL to use: ``base_url`` if given, else $FMA_BASE_URL, else :data:`BASE_URL`."""
    return base_url or os.environ.get(BASE_URL_ENV) or BASE_URL


def local_base_folder(base_url: str) -> Path | None:
    """The folder a ``file://`` URL or plain path names, or None for an http(s) URL."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", base_url) and not base_url.startswith("file://"):
        return None
    return Path(base_url.removeprefix("file://"))


def archive_url(base_url: str, archive: Archive) -> str:
    """The URL of ``archive`` under ``base_url`` (a trailing slash is optional)."""
    return base_url.rstrip("/") + "/" + archive.filename


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``93.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_free_space(path: str | os.PathLike, needed: float, what: str) -> None:
    """Raise DownloadError unless the file system holding ``path`` has ``needed`` bytes free.

    Parameters
    ----------
    path : path-like
        A folder (it need not exist yet: its nearest existing parent is measured).
    needed : float
        Bytes that must be free.
    what : str
        What the space is for, for the message (e.g. ``"downloading and extracting fma_large.zip"``).
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DownloadError(
            f"not enough free disk space for {what}: {format_bytes(needed)} needed, "
            f"{format_bytes(free)} free on the disk holding {probe}; free some space or choose "
            f"another --data_dir"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- Download ----------------------------------------------------------------------------------


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


# --- Extraction --------------------------------------------------------------------------------


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be extracted, or None when it is a plain file or folder."""
    name = info.filename
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or re.match(r"^[a-zA-Z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' in its path (it would be written outside the target folder)"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):
        if stat.S_ISLNK(mode):
            return "symbolic link"
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return "special file (device, socket or fifo)"
    return None


def check_archive_members(zf: zipfile.ZipFile, dest: str | os.PathLike, archive_name: str) -> None:
    """Raise UnsafeArchiveError for the first member that would not land as a file inside ``dest``.

    Absolute paths, ``..`` components, symbolic links and special files are refused, and so is a
    member whose path runs through a symbolic link already on disk.
    """
    root = os.path.realpath(dest)
    for info in zf.infolist():
        reason = _unsafe_reason(info)
        if reason is None:
            target = os.path.realpath(os.path.join(root, info.filename))
            if os.path.commonpath([root, target]) != root:
                reason = f"it would be written to {target} through a symbolic link"
        if reason is not None:
            raise UnsafeArchiveError(
                f"{archive_name}: refusing to extract member {info.filename!r}: {reason}; nothing was "
                f"extracted from this archive"
            )


@dataclass
class ExtractResult:
    """What :func:`extract_archive` did.

    Attributes
    ----------
    dest : Path
        The folder the archive was extracted into.
    files : int
        Regular-file members in the archive.
    extracted, skipped : int
        Members written this run, and members already on disk with the right size.
    bytes_written : int
        Bytes written this run.
    sha1s : dict
        Member name to the sha1 of the bytes written this run (for the checksums pass).
    """

    dest: Path
    files: int = 0
    extracted: int = 0
    skipped: int = 0
    bytes_written: int = 0
    sha1s: dict[str, str] = field(default_factory=dict)


def _has_size(path: Path, size: int) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def extract_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    members: Iterable[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int = MiB,
) -> ExtractResult:
    """Extract a zip archive into ``dest`` member by member, resumably and safely.

    Every member is checked first (:func:`check_archive_members`): one unsafe member and nothing
    is written. Members already on disk with their size are skipped; the others stream through
    ``<name>.extracting`` and are renamed into place when complete, so a killed run never leaves
    a half-written file under a member's name. The archive is never read whole into memory.

    Parameters
    ----------
    archive : path-like
        A zip file (BZIP2, DEFLATE or STORED members; zip64 is fine).
    dest : path-like
        The folder to extract into (created if needed).
    members : iterable of str, optional
        Only these member names (all by default).
    overwrite : bool
        Extract even members already on disk with the right size.
    progress : bool
        Show a tqdm bar in bytes.
    chunk_size : int
        Bytes per read.

    Returns
    -------
    ExtractResult

    Raises
    ------
    UnsafeArchiveError
        A member with an absolute path, ``..``, a symbolic link or a special file.
    ChecksumError
        Members that could not be read back (bad CRC, truncated data): the archive is damaged.
        The other members are extracted first.
    DownloadError
        Not enough free disk space for the members still to extract.
    """
    from tqdm.auto import tqdm

    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(members) if members is not None else None
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ChecksumError(
            f"{archive}: not a readable zip archive ({exc}); delete it and run the same command again"
        ) from exc
    with zf:
        check_archive_members(zf, dest, archive.name)
        infos = [i for i in zf.infolist() if wanted is None or i.filename in wanted]
        files = [i for i in infos if not i.is_dir()]
        todo = [i for i in files if overwrite or not _has_size(dest / i.filename, i.file_size)]
        result = ExtractResult(dest=dest, files=len(files), skipped=len(files) - len(todo))
        total = sum(i.file_size for i in files)
        left = sum(i.file_size for i in todo)
        check_free_space(dest, left, f"extracting {archive.name}")
        if result.skipped:
            log.info(
                "%s: %d of %d files already extracted, skipped", archive.name, result.skipped, len(files)
            )
        for info in infos:
            if info.is_dir():
                (dest / info.filename).mkdir(parents=True, exist_ok=True)
        made: set[Path] = set()
        failed: list[str] = []
        with tqdm(
            total=total,
            initial=total - left,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"extract {archive.name}",
            disable=not progress,
        ) as bar:
            for info in todo:
                target = dest / info.filename
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                tmp = target.with_name(target.name + ".extracting")
                hasher = hashlib.sha1()
                try:
                    try:
                        src = zf.open(info)
                    except _READ_ERRORS as exc:
                        raise _MemberReadError(f"{info.filename}: {exc}") from exc
                    with src, open(tmp, "wb") as out:
                        while True:
                            try:
                                chunk = src.read(chunk_size)
                            except _READ_ERRORS as exc:
                                raise _MemberReadError(f"{info.filename}: {exc}") from exc
                            if not chunk:
                                break
                            out.write(chunk)
                            hasher.update(chunk)
                            bar.update(len(chunk))
                except _MemberReadError as exc:
                    tmp.unlink(missing_ok=True)
                    failed.append(str(exc))
                    log.error("%s: cannot read member %s", archive.name, exc)
                    continue
                os.replace(tmp, target)
                result.extracted += 1
                result.bytes_written += info.file_size
                result.sha1s[info.filename] = hasher.hexdigest()
    if failed:
        raise ChecksumError(
            f"{archive}: {len(failed)} member(s) could not be read (first: {failed[0]}); the archive is "
            f"damaged: delete it and run the same command again"
        )
    return result


class _MemberReadError(Exception):
    """A member whose compressed data cannot be read (kept apart from errors writing to disk)."""


# Reading a member: bad CRC or header, truncated data, bad bz2/deflate stream, unsupported method.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError)


# --- Checksums pass ------------------------------------------------------------------------------


def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Parse an FMA ``checksums`` file (``sha1  relative/path`` lines) into {path: sha1}."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            match = re.match(r"^([0-9a-fA-F]{40})\s+\*?(.+)$", line)
            if not match:
                raise DatasetError(f"{path}, line {number}: expected 'sha1  path', got {line!r}")
            table[match.group(2)] = match.group(1).lower()
    return table


@dataclass(frozen=True)
class ChecksumProblem:
    """One file that does not match the archive's ``checksums`` file."""

    path: str  # relative to the archive's top folder, as in the checksums file
    status: str  # missing, mismatch, or repaired (was wrong on disk, extracted again, now right)
    expected_sha1: str
    actual_sha1: str


REPORT_FIELDS = ("path", "status", "expected_sha1", "actual_sha1")


def write_checksum_report(path: str | os.PathLike, problems: Iterable[ChecksumProblem]) -> Path:
    """Write the problems to a CSV (header only when there are none), atomically."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(REPORT_FIELDS)
    for p in problems:
        writer.writerow([p.path, p.status, p.expected_sha1, p.actual_sha1])
    return write_text_atomic(path, text.getvalue())


def verify_checksums(
    root: str | os.PathLike,
    checksums: Mapping[str, str],
    known: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[ChecksumProblem]:
    """Check the files under ``root`` against ``checksums``; report, never raise, on a difference.

    Parameters
    ----------
    root : path-like
        The folder the checksums' paths are relative to (the archive's top folder).
    checksums : mapping
        Relative path to expected sha1 (:func:`read_checksums`).
    known : mapping, optional
        Relative path to sha1 already computed (while extracting): those files are not read again.
    progress : bool
        Show a tqdm bar over the files read from disk.

    Returns
    -------
    list of ChecksumProblem
        ``missing`` and ``mismatch`` entries, in the checksums file's order.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    known = known or {}
    problems = []
    to_read = [rel for rel in checksums if rel not in known]
    with tqdm(
        total=len(to_read), unit="file", desc=f"sha1 {root.name}", disable=not progress or not to_read
    ) as bar:
        for rel, expected in checksums.items():
            actual = known.get(rel)
            if actual is None:
                path = root / rel
                actual = sha1_file(path) if path.is_file() else ""
                bar.update(1)
            if not actual:
                problems.append(ChecksumProblem(rel, "missing", expected, ""))
            elif actual != expected:
                problems.append(ChecksumProblem(rel, "mismatch", expected, actual))
    return problems


# --- One archive, start to finish --------------------------------------------------------------


@dataclass
class SetupResult:
    """The outcome of :func:`setup_archive` for one archive.

    Attributes
    ----------
    archive : Archive
    folder : Path
        The extracted top folder, e.g. ``fma_data/extracted/fma_large/fma_large``.
    already_done : bool
        Everything was in place; nothing was downloaded or extracted.
    problems : list of ChecksumProblem
        Files that differ from the archive's checksums (empty when all match).
    report : Path or None
        The CSV listing those problems.
    """

    archive: Archive
    folder: Path
    already_done: bool = False
    problems: list[ChecksumProblem] = field(default_factory=list)
    report: Path | None = None


def extract_dir(data_dir: str | os.PathLike, archive: Archive) -> Path:
    """``<data_dir>/extracted/<key>``: the zip's top folder lands inside, at the scripts' default."""
    return Path(data_dir) / "extracted" / archive.key


def marker_path(data_dir: str | os.PathLike, archive: Archive) -> Path:
    """The completion marker written after a verified extraction."""
    return extract_dir(data_dir, archive) / f"{archive.top}.complete.json"


def is_complete(data_dir: str | os.PathLike, archive: Archive, verify: bool = True) -> bool:
    """True when ``archive`` was extracted and checked, for this sha1 (any sha1 when not ``verify``)."""
    marker = _read_json(marker_path(data_dir, archive))
    if marker is None or marker.get("archive") != archive.filename:
        return False
    if not (extract_dir(data_dir, archive) / archive.top).is_dir():
        return False
    return not verify or archive.sha1 is None or marker.get("sha1") == archive.sha1


def _record_path(data_dir: Path, archive: Archive) -> Path:
    """Where the sha1 of a verified archive is remembered, so a resumed run need not hash it again."""
    return data_dir / f"{archive.filename}.verified.json"


def _trusted_sha1(record: Path, path: Path) -> str | None:
    """The sha1 recorded when ``path`` was verified, if it is the same, unchanged file."""
    data = _read_json(record)
    if data is None:
        return None
    st = path.stat()
    same = (data.get("path"), data.get("size"), data.get("mtime_ns")) == (
        str(path.resolve()),
        st.st_size,
        st.st_mtime_ns,
    )
    return data.get("sha1") if same else None


def _record_verified(record: Path, path: Path, sha1: str) -> None:
    st = path.stat()
    write_json_atomic(
        record, {"path": str(path.resolve()), "sha1": sha1, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    )


@dataclass(frozen=True)
class _Obtained:
    path: Path
    sha1: str | None  # None when never hashed (--no_verify on a file already there)
    deletable: bool  # --cleanup may delete it: in --data_dir or named with --archive, not a mirror's


def _obtain_archive(
    archive: Archive,
    data_dir: Path,
    *,
    base_url: str,
    local_archive: Path | None,
    verify: bool,
    download_options: Mapping[str, Any],
    progress: bool,
) -> _Obtained:
    """A complete archive: given, found in ``data_dir``, or downloaded; verified unless told not to."""
    expected = archive.sha1 if verify else None
    record = _record_path(data_dir, archive)
    mirror = local_base_folder(base_url)
    in_data_dir = False
    if local_archive is not None:
        path, deletable = local_archive, True
    elif mirror is not None:
        path, deletable = mirror / archive.filename, False
    else:
        path, deletable, in_data_dir = data_dir / archive.filename, True, True
        if not path.is_file():
            url = archive_url(base_url, archive)
            log.info("downloading %s from %s", archive.filename, url)
            digest = download_file(
                url,
                path,
                expected_sha1=expected,
                extract_factor=archive.expansion,
                progress=progress,
                **download_options,
            )
            if expected:
                _record_verified(record, path, digest)
            else:
                log.warning("%s: sha1 %s not verified (--no_verify)", archive.filename, digest)
            return _Obtained(path, digest, True)
        log.info("using %s, already in %s", archive.filename, data_dir)
    if not path.is_file():
        raise DownloadError(f"archive {path} does not exist (wanted for {archive.key})")

    if not expected:
        log.warning("%s: sha1 not verified (--no_verify)", path)
        return _Obtained(path, _trusted_sha1(record, path), deletable)
    digest = _trusted_sha1(record, path)
    if digest is None:
        log.info("checking the sha1 of %s (one pass over the file)", path)
        digest = sha1_file(path, progress=progress)
    if digest != expected.lower():
        record.unlink(missing_ok=True)
        if in_data_dir:
            bad = path.with_name(path.name + ".sha1-mismatch")
            os.replace(path, bad)
            raise ChecksumError(
                f"{path.name}: sha1 {digest} is not the expected {expected}; the file was kept as "
                f"{bad}: delete it and run the same command again to download it afresh"
            )
        raise ChecksumError(
            f"{path}: sha1 {digest} is not the expected {expected}; it is incomplete or another "
            f"release: download it again, or pass --sha1 / --no_verify if you trust this file"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    _record_verified(record, path, digest)
    return _Obtained(path, digest, deletable)


def setup_archive(
    archive: Archive,
    data_dir: str | os.PathLike,
    *,
    base_url: str | None = None,
    local_archive: str | os.PathLike | None = None,
    verify: bool = True,
    cleanup: bool = False,
    progress: bool = True,
    download_options: Mapping[str, Any] | None = None,
) -> SetupResult:
    """Download (or find), verify, extract and check one archive; a no-op when already done.

    Parameters
    ----------
    archive : Archive
        What to set up (an entry of :data:`ARCHIVES`, or one with another sha1).
    data_dir : path-like
        Archives go to ``data_dir``, extracted files to ``data_dir/extracted/<key>/<top>``.
    base_url : str, optional
        Server folder (http/https), or a local folder (plain path or ``file://``) holding the
        archive; default :func:`resolve_base_url`.
    local_archive : path-like, optional
        An archive the user already has; used in place (never copied).
    verify : bool
        Check the archive's sha1 (``--no_verify`` turns it off).
    cleanup : bool
        Delete the archive once its extraction finished and was checked.
    progress : bool
        Show progress bars.
    download_options : mapping, optional
        Passed to :func:`download_file` (``retries``, ``backoff``, ``timeout``, ``session``...).

    Returns
    -------
    SetupResult
    """
    data_dir = Path(data_dir)
    out = extract_dir(data_dir, archive)
    folder = out / archive.top
    if is_complete(data_dir, archive, verify):
        log.info(
            "%s: already downloaded, verified and extracted in %s; nothing to do", archive.filename, folder
        )
        return SetupResult(archive, folder, already_done=True)

    got = _obtain_archive(
        archive,
        data_dir,
        base_url=resolve_base_url(base_url),
        local_archive=Path(local_archive) if local_archive is not None else None,
        verify=verify,
        download_options=download_options or {},
        progress=progress,
    )

    if folder.is_symlink():
        # Left by --symlinks while only a smaller subset was here; the real files go in its place.
        log.info("removing the symlink %s (made for a smaller subset) before extracting", folder)
        folder.unlink()
    path = got.path
    log.info("extracting %s into %s", path.name, out)
    result = extract_archive(path, out, progress=progress)
    prefix = archive.top + "/"
    problems: list[ChecksumProblem] = []
    report = None
    checksums_file = folder / "checksums"
    if checksums_file.is_file():
        checksums = read_checksums(checksums_file)
        known = {n.removeprefix(prefix): s for n, s in result.sha1s.items() if n.startswith(prefix)}
        problems = verify_checksums(folder, checksums, known, progress=progress)
        problems = _repair(path, out, prefix, problems, known, progress)
        report = write_checksum_report(out / f"{archive.top}_checksum_problems.csv", problems)
        bad = [p for p in problems if p.status != "repaired"]
        if bad:
            log.warning(
                "%s: %d of %d files do not match the archive's checksums (%s): listed in %s",
                archive.top,
                len(bad),
                len(checksums),
                ", ".join(f"{sum(p.status == s for p in bad)} {s}" for s in ("missing", "mismatch")),
                report,
            )
        else:
            log.info("%s: all %d files match the archive's checksums", archive.top, len(checksums))
    else:
        log.warning("%s holds no checksums file: the extracted files were not checked", path.name)

    write_json_atomic(
        marker_path(data_dir, archive),
        {
            "archive": archive.filename,
            "sha1": got.sha1,
            "verified": bool(verify and got.sha1),
            "files": result.files,
            "checksum_problems": sum(p.status != "repaired" for p in problems),
            "report": str(report) if report else None,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    if cleanup and not got.deletable:
        log.info("kept %s: --cleanup deletes only archives in --data_dir or given with --archive", path)
    elif cleanup:
        try:
            path.unlink()
            _record_path(data_dir, archive).unlink(missing_ok=True)
            log.info("deleted %s (--cleanup): its extraction is complete and checked", path)
        except OSError as exc:
            log.warning("could not delete %s (--cleanup): %s", path, exc)
    return SetupResult(archive, folder, problems=problems, report=report)


def _repair(
    path: Path,
    out: Path,
    prefix: str,
    problems: list[ChecksumProblem],
    known: Mapping[str, str],
    progress: bool,
) -> list[ChecksumProblem]:
    """Extract again the mismatching files that were skipped (found on disk) and check them again.

    A file extracted by an earlier, interrupted run has the right size but may be damaged; the
    verified archive is the authority. Files freshly extracted are not retried: their bytes are
    the archive's own.
    """
    retry = [p for p in problems if p.status == "mismatch" and p.path not in known]
    if not retry:
        return problems
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    retry = [p for p in retry if prefix + p.path in names]
    if not retry:
        return problems
    log.warning("%d extracted file(s) differ from the checksums: extracting them again", len(retry))
    again = extract_archive(
        path, out, members=[prefix + p.path for p in retry], overwrite=True, progress=progress
    )
    fixed = {}
    for p in retry:
        actual = again.sha1s.get(prefix + p.path, p.actual_sha1)
        fixed[p.path] = replace(
            p, status="repaired" if actual == p.expected_sha1 else "mismatch", actual_sha1=actual
        )
    return [fixed.get(p.path, p) for p in problems]


# --- Several archives, and the default layout -----------------------------------------------------


def archives_for(
    subset: str,
    archives: Mapping[str, Archive] | None = None,
    sha1_overrides: Mapping[str, str] | None = None,
) -> list[Archive]:
    """The archives a ``--subset`` choice names, with any sha1 overridden.

    ``sha1_overrides`` keys are archive keys (``metadata``) or file names (``fma_metadata.zip``);
    the key ``""`` applies to the subset's only archive.
    """
    table = dict(archives if archives is not None else ARCHIVES)
    if subset not in SUBSETS:
        raise DatasetError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    chosen = [table[key] for key in SUBSETS[subset]]
    for name, sha1 in (sha1_overrides or {}).items():
        if not re.fullmatch(r"[0-9a-fA-F]{40}", sha1):
            raise DatasetError(f"--sha1 {sha1!r} is not a sha1 (40 hexadecimal digits)")
        if name == "":
            if len(chosen) != 1:
                raise DatasetError(f"--subset {subset} has {len(chosen)} archives: write --sha1 NAME=SHA1")
            targets = [0]
        else:
            targets = [i for i, a in enumerate(chosen) if name in (a.key, a.filename, a.top)]
            if not targets:
                known = ", ".join(a.filename for a in chosen)
                raise DatasetError(
                    f"--sha1 names {name!r}, which is not among this subset's archives ({known})"
                )
        for i in targets:
            chosen[i] = replace(chosen[i], sha1=sha1.lower())
    return chosen


def setup_dataset(
    subset: str,
    data_dir: str | os.PathLike,
    *,
    archives: Mapping[str, Archive] | None = None,
    sha1_overrides: Mapping[str, str] | None = None,
    local_archives: Iterable[str | os.PathLike] = (),
    base_url: str | None = None,
    verify: bool = True,
    cleanup: bool = False,
    progress: bool = True,
    download_options: Mapping[str, Any] | None = None,
) -> list[SetupResult]:
    """Set up every archive of ``subset`` (see :func:`setup_archive`), checking disk space first.

    Parameters
    ----------
    subset : str
        A key of :data:`SUBSETS`.
    data_dir : path-like
        Where archives and extracted files go.
    archives : mapping, optional
        Replaces :data:`ARCHIVES` (tests serve their own small archives this way).
    sha1_overrides : mapping, optional
        See :func:`archives_for`.
    local_archives : iterable of path-like
        Archives the user already has; matched to the subset's archives by file name, or to
        its only archive whatever the name.
    base_url, verify, cleanup, progress, download_options
        See :func:`setup_archive`.

    Returns
    -------
    list of SetupResult
    """
    data_dir = Path(data_dir)
    chosen = archives_for(subset, archives, sha1_overrides)
    local = _match_local_archives(chosen, [Path(p) for p in local_archives])

    todo = [a for a in chosen if not is_complete(data_dir, a, verify)]
    url = resolve_base_url(base_url)
    mirror = local_base_folder(url)
    needed = 0.0
    for a in todo:
        candidates = [local.get(a.key), data_dir / a.filename, mirror / a.filename if mirror else None]
        present = next((c for c in candidates if c is not None and c.is_file()), None)
        if present is not None:
            size, download = present.stat().st_size, 0
        else:
            size = _remote_size(archive_url(url, a), download_options or {}) or a.size
            part = data_dir / (a.filename + ".part")
            download = max(0, size - (part.stat().st_size if part.exists() else 0))
        needed += download + size * a.expansion
    if needed:
        names = ", ".join(a.filename for a in todo)
        check_free_space(data_dir, needed, f"--subset {subset} ({names}: download and extraction)")

    return [
        setup_archive(
            a,
            data_dir,
            base_url=base_url,
            local_archive=local.get(a.key),
            verify=verify,
            cleanup=cleanup,
            progress=progress,
            download_options=download_options,
        )
        for a in chosen
    ]


def _remote_size(url: str, options: Mapping[str, Any]) -> int | None:
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


def _match_local_archives(chosen: list[Archive], paths: list[Path]) -> dict[str, Path]:
    if not paths:
        return {}
    if len(chosen) == 1 and len(paths) == 1:
        return {chosen[0].key: paths[0]}
    by_name = {a.filename: a.key for a in chosen}
    matched = {}
    for p in paths:
        if p.name not in by_name:
            raise DatasetError(
                f"--archive {p}: its name matches none of {', '.join(by_name)}; with several archives "
                f"each must keep its original name"
            )
        matched[by_name[p.name]] = p
    return matched


def link_default_layout(
    data_dir: str | os.PathLike,
    metadata_link: str | os.PathLike,
    audio_link: str | os.PathLike,
    archives: Mapping[str, Archive] | None = None,
) -> list[str]:
    """Point the scripts' default folders at what was extracted under ``data_dir``; idempotent.

    ``metadata_link`` (config.METADATA_DIR) points at the extracted ``fma_metadata`` folder.
    ``audio_link`` (config.AUDIO_DIR, an fma_large folder) points at the largest extracted clip
    subset: fma_large, else fma_medium, else fma_small (fma_full holds untrimmed tracks and is
    never linked). A path that already is the target (the default ``data_dir``) is left as it is;
    a symlink pointing elsewhere is replaced; a real folder that is something else is never
    touched.

    Returns
    -------
    list of str
        One line per link: what was done, and what to know about a smaller subset.
    """
    table = archives if archives is not None else ARCHIVES
    lines = []
    meta = table["metadata"]
    if is_complete(data_dir, meta, verify=False):
        lines.append(_link(Path(metadata_link), extract_dir(data_dir, meta) / meta.top))
    else:
        lines.append(f"metadata: not extracted under {data_dir} yet; {metadata_link} not linked")
    for key in AUDIO_STAND_INS:
        archive = table[key]
        if is_complete(data_dir, archive, verify=False):
            lines.append(_link(Path(audio_link), extract_dir(data_dir, archive) / archive.top))
            if key != "fma_large":
                size = key.removeprefix("fma_")
                lines.append(
                    f"note: {audio_link} holds {key} ({TRACK_COUNTS[key]:,} clips), while tracks.csv lists "
                    f"all {TRACK_COUNTS['fma_large']:,}: use the {size} subset in the other scripts "
                    f'(--subset {size}, or SUBSET = "{size}" in config.py)'
                )
            break
    else:
        lines.append(f"audio: no clip subset extracted under {data_dir} yet; {audio_link} not linked")
    return lines


def _link(link: Path, target: Path) -> str:
    if os.path.realpath(link) == os.path.realpath(target):
        return f"{link}: already in place"
    if link.exists() and not link.is_symlink():
        return f"{link}: left alone (a real folder, not the one under --data_dir); pass the folder explicitly"
    link.parent.mkdir(parents=True, exist_ok=True)
    # Relative, so the folder can move as a whole; replaced atomically when it existed.
    relative = os.path.relpath(os.path.realpath(target), os.path.realpath(link.parent))
    tmp = link.with_name(link.name + ".linking")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(relative, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return f"{link} -> {relative}"
