"""Zip archives: safe, resumable extraction, and the check against a ``checksums`` file.

Every member is vetted before anything is written (no absolute paths, ``..``, links or special
files), extracted through a temporary name, and hashed on the way so the checksums pass need not
read it again. Fetching the FMA archives is :mod:`genrekit.download.http`; the whole setup of a
subset is :mod:`genrekit.download.setup`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genrekit.errors import ChecksumError, DatasetError, UnsafeArchiveError
from genrekit.fileio import MiB, check_free_space, sha1_file, write_text_atomic

log = logging.getLogger(__name__)


# --- Safety -----------------------------------------------------------------------------------


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


# --- Extraction -------------------------------------------------------------------------------


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


class _MemberReadError(Exception):
    """A member whose compressed data cannot be read (kept apart from errors writing to disk)."""


# Reading a member: bad CRC or header, truncated data, bad bz2/deflate stream, unsupported method.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError)


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
        with tqdm(
            total=total,
            initial=total - left,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"extract {archive.name}",
            disable=not progress,
        ) as bar:
            failed = _extract_members(zf, todo, result, bar, chunk_size, archive.name)
    if failed:
        raise ChecksumError(
            f"{archive}: {len(failed)} member(s) could not be read (first: {failed[0]}); the archive is "
            f"damaged: delete it and run the same command again"
        )
    return result


def _extract_members(
    zf: zipfile.ZipFile,
    todo: list[zipfile.ZipInfo],
    result: ExtractResult,
    bar: Any,
    chunk_size: int,
    archive_name: str,
) -> list[str]:
    """Extract ``todo`` into ``result.dest``, counting into ``result``; return the members that
    could not be read (the others are extracted all the same)."""
    made: set[Path] = set()
    failed: list[str] = []
    for info in todo:
        target = result.dest / info.filename
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        tmp = target.with_name(target.name + ".extracting")
        try:
            digest = _extract_member(zf, info, tmp, bar, chunk_size)
        except _MemberReadError as exc:
            tmp.unlink(missing_ok=True)
            failed.append(str(exc))
            log.error("%s: cannot read member %s", archive_name, exc)
            continue
        os.replace(tmp, target)
        result.extracted += 1
        result.bytes_written += info.file_size
        result.sha1s[info.filename] = digest
    return failed


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tmp: Path, bar: Any, chunk_size: int) -> str:
    """Stream one member into ``tmp``; its sha1. _MemberReadError when its data cannot be read."""
    hasher = hashlib.sha1()
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
    return hasher.hexdigest()


# --- Checksums --------------------------------------------------------------------------------


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
    *,
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


def repair_mismatches(
    path: Path,
    out: Path,
    prefix: str,
    problems: list[ChecksumProblem],
    *,
    known: Mapping[str, str],
    progress: bool = True,
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
