"""Test helpers for the download tests: a real HTTP server on 127.0.0.1 and FMA-format archives.

The fixtures built from them are in download_fixtures.py.

The server serves a folder, honours (or ignores) Range, can answer 5xx a given number of times or
cut a response after K bytes, and logs every request's method, Range header, status and bytes sent.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0


class ArchiveServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``; use as a context manager."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.log: list[Request] = []
        self.ignore_range = False
        self.fail_next: list[int] = []  # statuses answered to the next GETs, in order
        self.cut_next: list[int] = []  # the next GETs send this many body bytes, then hang up
        self.delay = 0.0  # seconds slept before each 64 KiB block of a body (a slow link)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0  # requests being answered
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def gets(self) -> list[Request]:
        """The GET requests, once every answer has been written out (a client may finish reading
        before the server's thread has counted the last bytes it sent)."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=10)
            return [r for r in self.log if r.method == "GET"]

    def __enter__(self) -> ArchiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                with server._lock:
                    server._active += 1
                try:
                    self._answer(body)
                finally:
                    with server._idle:
                        server._active -= 1
                        server._idle.notify_all()

            def _answer(self, body: bool) -> None:
                entry = Request(self.command, self.path, self.headers.get("Range"))
                with server._lock:
                    server.log.append(entry)
                    fail = server.fail_next.pop(0) if body and server.fail_next else None
                    cut = server.cut_next.pop(0) if body and server.cut_next else None
                path = server.root / self.path.lstrip("/")
                if fail is not None:
                    return self._reply(entry, fail, b"")
                if not path.is_file():
                    return self._reply(entry, 404, b"")
                data = path.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", entry.range or "")
                status, headers = 200, {}
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        return self._reply(entry, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self._reply(entry, status, data[start:] if body else b"", headers, len(data) - start, cut)

            def _reply(self, entry, status, payload, headers=None, length=None, cut=None) -> None:
                entry.status = status
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload) if length is None else length))
                self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
                self.end_headers()
                if cut is not None:
                    payload = payload[:cut]
                    self.close_connection = True
                try:
                    for i in range(0, len(payload), 65536):
                        time.sleep(server.delay)
                        self.wfile.write(payload[i : i + 65536])
                        self.wfile.flush()
                        entry.sent += len(payload[i : i + 65536])
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    self.close_connection = True

        return Handler


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sha1_file(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def write_fma_zip(
    path: Path,
    top: str,
    files: dict[str, bytes],
    checksums: dict[str, str] | None = None,
) -> str:
    """Write an archive in FMA's format and return its sha1.

    BZIP2 members (method 12) with zip64 records, ``<top>/README.txt``, ``<top>/checksums`` (lines
    ``sha1  relative/path``, computed from ``files`` unless ``checksums`` is given) and the files.
    """
    table = checksums if checksums is not None else {rel: sha1_bytes(data) for rel, data in files.items()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr(f"{top}/README.txt", f"{top}: test archive in the FMA format\n")
        zf.writestr(f"{top}/checksums", "".join(f"{sha}  {rel}\n" for rel, sha in table.items()))
        for rel, data in files.items():
            info = zipfile.ZipInfo(f"{top}/{rel}", date_time=(2017, 4, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_BZIP2
            with zf.open(info, "w", force_zip64=True) as out:
                out.write(data)
    return sha1_file(path)


def write_zip_with(path: Path, name: str, data: bytes = b"x", symlink_to: str | None = None) -> Path:
    """A zip holding one ordinary file and one member called ``name`` (a symlink when asked)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fma_small/README.txt", "ok\n")
        info = zipfile.ZipInfo(name)
        if symlink_to is not None:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            data = symlink_to.encode()
        zf.writestr(info, data)
    return path


REPO = Path(__file__).resolve().parents[1]
FAST = {"backoff": 0.001, "timeout": 10}


METADATA_FILES = {
    "tracks.csv": b",album,track\n,id,genre_top\ntrack_id,,\n2,1,Hip-Hop\n5,1,Hip-Hop\n140,2,Folk\n",
    "genres.csv": b"genre_id,#tracks,parent,title,top_level\n17,1,0,Folk,17\n21,2,0,Hip-Hop,21\n",
}


def folder_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def run_until(code: str, ready, timeout: float = 240.0) -> subprocess.Popen:
    """Start ``python -c code`` in the repository, wait until ``ready()`` holds, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the process ended before it could be interrupted"
            assert time.monotonic() < deadline, "the process made no progress"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc
