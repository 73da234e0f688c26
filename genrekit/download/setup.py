"""Set up the FMA archives: which ones a subset needs, found or downloaded, extracted, checked.

The catalogue of archives (names, sha1s, sizes), the disk-space check made before anything is
fetched, the completion markers that make a second run a quick no-op, and the links that point the
scripts' default folders at what was extracted. The HTTP transfer is
:mod:`genrekit.download.http`; zip safety, extraction and checksums are :mod:`genrekit.download.archives`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genrekit.download.archives import (
    ChecksumProblem,
    ExtractResult,
    extract_archive,
    read_checksums,
    repair_mismatches,
    verify_checksums,
    write_checksum_report,
)
from genrekit.download.http import BASE_URL, BASE_URL_ENV, download_file, remote_size, set_aside_mismatch
from genrekit.errors import ChecksumError, DatasetError, DownloadError
from genrekit.fileio import GiB, MiB, check_free_space, sha1_file, write_json_atomic

log = logging.getLogger(__name__)


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


# --- Small helpers ----------------------------------------------------------------------------


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- One archive, start to finish -------------------------------------------------------------


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


def is_complete(data_dir: str | os.PathLike, archive: Archive, *, verify: bool = True) -> bool:
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
            raise set_aside_mismatch(path, path, digest, expected)
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
    if is_complete(data_dir, archive, verify=verify):
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
    problems, report = _check_extracted(archive, path, out, result, progress)
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
    if cleanup:
        _clean_up(archive, data_dir, got)
    return SetupResult(archive, folder, problems=problems, report=report)


def _check_extracted(
    archive: Archive, path: Path, out: Path, result: ExtractResult, progress: bool
) -> tuple[list[ChecksumProblem], Path | None]:
    """Check the extracted files against the archive's ``checksums`` file, extracting again the
    ones an earlier run left damaged; the problems left, and the CSV listing them."""
    folder = out / archive.top
    prefix = archive.top + "/"
    checksums_file = folder / "checksums"
    if not checksums_file.is_file():
        log.warning("%s holds no checksums file: the extracted files were not checked", path.name)
        return [], None
    checksums = read_checksums(checksums_file)
    known = {n.removeprefix(prefix): s for n, s in result.sha1s.items() if n.startswith(prefix)}
    problems = verify_checksums(folder, checksums, known=known, progress=progress)
    problems = repair_mismatches(path, out, prefix, problems, known=known, progress=progress)
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
    return problems, report


def _clean_up(archive: Archive, data_dir: Path, got: _Obtained) -> None:
    """--cleanup: delete the archive once its extraction is complete and checked (never a mirror's)."""
    path = got.path
    if not got.deletable:
        log.info("kept %s: --cleanup deletes only archives in --data_dir or given with --archive", path)
        return
    try:
        path.unlink()
        _record_path(data_dir, archive).unlink(missing_ok=True)
        log.info("deleted %s (--cleanup): its extraction is complete and checked", path)
    except OSError as exc:
        log.warning("could not delete %s (--cleanup): %s", path, exc)


# --- Several archives, and the default layout -------------------------------------------------


def archives_for(
    subset: str,
    *,
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
    chosen = archives_for(subset, archives=archives, sha1_overrides=sha1_overrides)
    local = _match_local_archives(chosen, [Path(p) for p in local_archives])

    todo = [a for a in chosen if not is_complete(data_dir, a, verify=verify)]
    url = resolve_base_url(base_url)
    mirror = local_base_folder(url)
    needed = 0.0
    for a in todo:
        candidates = [local.get(a.key), data_dir / a.filename, mirror / a.filename if mirror else None]
        present = next((c for c in candidates if c is not None and c.is_file()), None)
        if present is not None:
            size, download = present.stat().st_size, 0
        else:
            size = remote_size(archive_url(url, a), download_options or {}) or a.size
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
    *,
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
