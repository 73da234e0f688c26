"""The one atomic writer, the one file hasher and the one output-path policy of the package, and
the free-disk-space check.

A file is written under a temporary name beside its final one, flushed to disk and renamed over
it (:func:`os.replace`), so a reader or a killed run never sees a half-written file; a failed write
leaves no temporary file behind. Files written by a library (a plot, a Keras model, an ``.npz``)
go through :func:`replacing`, which hands out the temporary path.

Before any work, every file a user names for output (and every file a script writes into a named
folder) passes :func:`check_output_path`: one of the run's inputs, an audio file, a link, a FIFO,
a device, a folder, or a file that is not recognisably genrekit's own output of that kind
(:class:`OutputKind`) is refused with one :class:`~genrekit.errors.OutputPathError` line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import DownloadError, OutputPathError
from genrekit.paths import NAME_ERRORS

MiB = 1 << 20
GiB = 1 << 30


def temporary_beside(path: str | os.PathLike) -> Path:
    """A hidden temporary name in ``path``'s folder, unique to this process, same suffixes.

    Every suffix is kept because some writers choose or check the format by them (Keras
    ``.h5``/``.keras`` and ``.weights.h5``, ``np.savez``, matplotlib).
    """
    path = Path(path)
    suffixes = "".join(path.suffixes)
    base = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{base}.{os.getpid()}.tmp{suffixes}")


_TEMPORARY = re.compile(r"\..+\.([0-9]+)\.tmp(\..+)?")  # what temporary_beside names


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The files in ``folder`` that :func:`temporary_beside` named for a process no longer running:
    what a writer killed mid-write left (a running writer's file is not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not _running(int(match.group(1))):
            found.append(path)
    return found


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    The parent folder is created. Used where a library writes the file itself, e.g.
    ``with replacing(out) as tmp: fig.savefig(tmp)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (parent folder created); return the path.

    ``fsync=False`` skips flushing to disk before the rename: still never half-written on a
    crash of the process, and much faster for many small files that can be made again.
    """
    path = Path(path)
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; line endings are written as given.

    A file name in ``text`` that is not UTF-8 is written as its exact bytes
    (:data:`genrekit.paths.NAME_ERRORS`), never a UnicodeEncodeError after the work is done.
    """
    return write_bytes_atomic(path, text.encode("utf-8", NAME_ERRORS), fsync=fsync)


def write_json_atomic(
    path: str | os.PathLike,
    data: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    ensure_ascii: bool = True,
    allow_nan: bool = True,
    fsync: bool = True,
) -> Path:
    """Write ``data`` as JSON (``indent`` 2, a final newline) to ``path`` atomically.

    File names that are not UTF-8 are kept exactly (see :func:`json_text`).
    """
    text = json_text(data, indent=indent, default=default, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    return write_text_atomic(path, text + "\n", fsync=fsync)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(data: Any, **options: Any) -> str:
    """``json.dumps(data, **options)``, with any lone surrogate written as its ``\\udcXX`` escape.

    A file name that is not valid UTF-8 comes from the OS as a str with lone surrogates
    (:func:`os.fsdecode`, ``surrogateescape``); they cannot be encoded as UTF-8, so even with
    ``ensure_ascii=False`` they are escaped as ``ensure_ascii=True`` would (a surrogate only ever
    stands inside a JSON string). ``json.loads`` gives the same str back, and :func:`os.fsencode`
    the name's exact bytes.
    """
    text = json.dumps(data, **options)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def name_bytes(name: str | os.PathLike) -> bytes:
    """The exact bytes of a file name as the OS gave it (:func:`os.fsencode`)."""
    return os.fsencode(name)


def is_utf8_name(name: str) -> bool:
    """True when ``name`` is valid UTF-8 as the OS gave it (no ``surrogateescape`` surrogates)."""
    return _SURROGATE.search(name) is None


def shown_name(name: str | os.PathLike) -> str:
    """``name`` printable on any console: bytes that are not UTF-8 shown as ``\\xe9``."""
    return name_bytes(name).decode("utf-8", errors="backslashreplace")


def read_json(path: str | os.PathLike, *, error: type[Exception], what: str = "file") -> Any:
    """Read a JSON file; a missing file or bad JSON is one ``error`` naming the path.

    ``what`` names the file in the message (``"<path>: <what> not found"``).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None


def file_digest(
    path: str | os.PathLike, algorithm: str = "sha256", *, progress: bool = False, chunk_size: int = 4 * MiB
) -> str:
    """The hex digest of a file (any :mod:`hashlib` algorithm), read in chunks.

    ``progress`` shows a tqdm bar (for archives of many gigabytes).
    """
    path = Path(path)
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        if not progress:
            while chunk := fh.read(chunk_size):
                hasher.update(chunk)
            return hasher.hexdigest()
        from tqdm.auto import tqdm

        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{algorithm} {path.name}",
        ) as bar:
            while chunk := fh.read(chunk_size):
                hasher.update(chunk)
                bar.update(len(chunk))
    return hasher.hexdigest()


def sha1_file(path: str | os.PathLike, *, progress: bool = False) -> str:
    """The sha1 of a file (FMA's checksums), read in chunks."""
    return file_digest(path, "sha1", progress=progress)


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


# --- the output policy ----------------------------------------------------------------------------

HEAD_BYTES = 64 * 1024  # an existing output is recognised from this many of its first bytes


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """What genrekit writes at an output path, and how it recognises a file it wrote there before.

    Parameters
    ----------
    name : str
        For messages, e.g. ``"genrekit inference report (JSON)"``.
    recognise : callable
        Takes the first :data:`HEAD_BYTES` bytes of an existing regular file; True when it is
        genrekit's own output of this kind (so it may be replaced).
    """

    name: str
    recognise: Callable[[bytes], bool]


def json_kind(name: str, first_key: str, value: str | None = None) -> OutputKind:
    """A JSON object genrekit writes with ``first_key`` first (and, given, ``value`` its string value)."""
    key = re.escape(json.dumps(first_key)).encode()
    tail = rb"\s*:\s*" + re.escape(json.dumps(value)).encode() if value is not None else rb"\s*:"
    pattern = re.compile(rb"\A\s*\{\s*" + key + tail)
    return OutputKind(name, lambda head: pattern.match(head) is not None)


def prefix_kind(name: str, *prefixes: bytes, empty: bool = False) -> OutputKind:
    """A file genrekit writes starting with one of ``prefixes`` (``empty``: an empty file is one too)."""
    return OutputKind(name, lambda head: head.startswith(prefixes) or (empty and head == b""))


# Magic numbers of audio containers and streams, for files whose extension does not say.
AUDIO_MAGIC = (
    (b"ID3", "MP3 (ID3 tag)"),
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"FORM", "AIFF"),
    (b".snd", "Sun audio"),
    (b"wvpk", "WavPack"),
    (b"MAC ", "Monkey's Audio"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMA"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
)


def audio_content(head: bytes) -> str | None:
    """The audio format ``head`` (a file's first bytes) starts like, or None."""
    for magic, what in AUDIO_MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] in (b"WAVE", b"AVI "):
        return "WAVE"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG/ADTS frame sync
        return "MPEG audio"
    return None


def audio_extensions() -> frozenset[str]:
    """The extensions of audio files (the ones a music folder is read by, decodable or not)."""
    from genrekit.features.audio_files import AUDIO_EXTENSIONS, UNSUPPORTED_AUDIO

    return AUDIO_EXTENSIONS | UNSUPPORTED_AUDIO


_FILE_TYPES = (
    (stat.S_ISDIR, "a folder, not a file"),
    (stat.S_ISFIFO, "a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "a character device, not a regular file"),
    (stat.S_ISBLK, "a block device, not a regular file"),
    (stat.S_ISSOCK, "a socket, not a regular file"),
)


def check_output_path(
    path: str | os.PathLike,
    kind: OutputKind,
    *,
    inputs: Mapping[str | os.PathLike, str] | None = None,
    what: str = "output",
) -> Path:
    """``path`` if genrekit may write its ``kind`` of output there; else one OutputPathError line.

    Call it before any work. Refused: a link (never followed: its target stays as it is), a
    folder, FIFO, device or socket, one of ``inputs`` (the same file, hard links included; a
    folder among the inputs: an audio file inside it), an existing audio file (by extension or
    by its first bytes), and an existing regular file that ``kind`` does not recognise as
    genrekit's own (someone's notes, a report of another kind).

    Parameters
    ----------
    path : path-like
        The output file.
    kind : OutputKind
        What will be written there.
    inputs : mapping, optional
        ``path -> role`` of the run's inputs, e.g. ``{song: "--file", model: "the model"}``.
    what : str
        Names the output in the message, e.g. ``"--output"``.

    Raises
    ------
    OutputPathError
    """
    path = Path(path)
    _check_input(path, inputs or {}, what)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        _check_parent(path, what)
        return path
    except NotADirectoryError:
        raise OutputPathError(f"{what} {path}: a part of its folder path is not a folder") from None
    if stat.S_ISLNK(st.st_mode):
        link = f"to {os.readlink(path)}" if path.exists() else "that cannot be resolved (dangling or a loop)"
        raise OutputPathError(
            f"{what} {path} is a symbolic link {link}; genrekit never writes through a link: give the "
            f"file itself or another name"
        )
    for test, kind_name in _FILE_TYPES:
        if test(st.st_mode):
            raise OutputPathError(f"{what} {path} is {kind_name}; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{what} {path} is not a regular file; give a file name")
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    audio = audio_content(head) or (path.suffix.lower() in audio_extensions() and "audio, by its extension")
    if audio:
        raise OutputPathError(f"{what} {path} is an audio file ({audio}); refusing to overwrite it")
    if not kind.recognise(head):
        raise OutputPathError(
            f"{what} {path} exists and is not a {kind.name}; refusing to overwrite it: give another "
            f"name, or move the file away"
        )
    return path


def _check_input(path: Path, inputs: Mapping[str | os.PathLike, str], what: str) -> None:
    """OutputPathError when ``path`` is one of ``inputs`` (or an audio file in an input folder)."""
    try:
        out = os.stat(path)
    except OSError:
        out = None
    target = _absolute(path)
    for given, role in inputs.items():
        if given is None:
            continue
        given = Path(given)
        if given.is_dir():
            if path.suffix.lower() in audio_extensions() and given.resolve() in target.parents:
                raise OutputPathError(f"{what} {path} is one of the input files of {role} {given}")
            continue
        try:
            same = out is not None and os.path.samestat(out, os.stat(given))
        except OSError:
            same = False
        if same or _absolute(given) == target:
            raise OutputPathError(f"{what} {path} is {role} ({given}), an input of this run")


def _absolute(path: Path) -> Path:
    """``path`` absolute, its folder resolved and its own name kept (a link is not followed)."""
    try:
        return Path(os.path.realpath(path.parent)) / path.name
    except (OSError, ValueError):
        return Path(os.path.abspath(path))


def _check_parent(path: Path, what: str) -> None:
    """OutputPathError when the nearest existing folder above ``path`` is not a folder."""
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{what} {path}: {parent} is not a folder")


def check_output_dir(
    folder: str | os.PathLike,
    files: Mapping[str, OutputKind],
    *,
    inputs: Mapping[str | os.PathLike, str] | None = None,
    what: str = "--output_dir",
) -> Path:
    """``folder`` if it is (or can be made) a folder and each of ``files`` (relative name -> kind)
    passes :func:`check_output_path` there; else one OutputPathError line. A link to a folder is
    followed (runs/ on another disk); the files in it are not."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputPathError(f"{what} {folder} is not a folder ({_not_a_folder(folder)})")
    if not os.path.lexists(folder):
        _check_parent(folder, what)
    for name, kind in files.items():
        check_output_path(folder / name, kind, inputs=inputs, what=f"{what} file")
    return folder


def _not_a_folder(path: Path) -> str:
    if not path.exists():
        return "a link that cannot be resolved"
    mode = os.stat(path).st_mode
    return next((name.split(",")[0] for test, name in _FILE_TYPES if test(mode)), "a file")
