"""download_file against a real HTTP server on 127.0.0.1: Range resume, retries, sha1, SIGKILL."""

from __future__ import annotations

import numpy as np
import pytest
from download_helpers import (
    FAST,
    ArchiveServer,
    run_until,
    sha1_bytes,
    sha1_file,
)

from genrekit.download import http as http_download
from genrekit.errors import ChecksumError, DownloadError

pytest_plugins = ("download_fixtures",)  # the mp3s and served fixtures


def test_404_on_download_is_not_retried(served, tmp_path):
    with pytest.raises(DownloadError, match=r"fma_full.zip was not found \(HTTP 404\)"):
        http_download.download_file(
            served.url + "fma_full.zip", tmp_path / "fma_full.zip", progress=False, **FAST
        )
    assert [r.status for r in served.gets()] == [404]


def test_cut_connection_is_resumed_with_range_in_the_same_run(served, tmp_path):
    size = (served.root / "fma_large.zip").stat().st_size
    served.cut_next = [1000, size // 2]
    dest = tmp_path / "fma_large.zip"
    digest = http_download.download_file(
        served.url + "fma_large.zip", dest, expected_sha1=served.sha1["fma_large"], progress=False, **FAST
    )
    assert digest == served.sha1["fma_large"] and sha1_file(dest) == digest
    assert [(r.range, r.sent) for r in served.gets()] == [
        (None, 1000),
        ("bytes=1000-", size // 2),
        (f"bytes={1000 + size // 2}-", size - 1000 - size // 2),
    ]


def test_server_without_range_support_restarts_cleanly(served, tmp_path):
    dest = tmp_path / "fma_large.zip"
    part = tmp_path / "fma_large.zip.part"
    part.write_bytes(b"\0" * 3000)  # bytes from an earlier run, and wrong: they must not survive
    served.ignore_range = True
    http_download.download_file(
        served.url + "fma_large.zip", dest, expected_sha1=served.sha1["fma_large"], progress=False, **FAST
    )
    assert sha1_file(dest) == served.sha1["fma_large"] and not part.exists()
    (only,) = served.gets()
    assert only.range == "bytes=3000-" and only.status == 200


def test_server_errors_are_retried_with_backoff(served, tmp_path):
    served.fail_next = [500, 503]
    dest = tmp_path / "fma_small.zip"
    http_download.download_file(
        served.url + "fma_small.zip",
        dest,
        expected_sha1=served.sha1["fma_small"],
        retries=2,
        progress=False,
        **FAST,
    )
    assert [r.status for r in served.gets()] == [500, 503, 200]
    assert sha1_file(dest) == served.sha1["fma_small"]


def test_too_many_server_errors_give_up_with_a_clear_error(served, tmp_path):
    served.fail_next = [500, 500, 500]
    with pytest.raises(DownloadError, match=r"giving up after 2 failed attempts in a row \(HTTP 500"):
        http_download.download_file(
            served.url + "fma_small.zip", tmp_path / "x.zip", retries=1, progress=False, **FAST
        )
    assert len(served.gets()) == 2


def test_unreachable_server_is_retried_then_reported(tmp_path):
    with pytest.raises(DownloadError, match="connection failed"):
        http_download.download_file(
            "http://127.0.0.1:9/fma_small.zip", tmp_path / "x.zip", retries=1, progress=False, **FAST
        )


def test_complete_part_file_from_a_killed_run_is_finished_without_download(served, tmp_path):
    """Killed between the last byte and the rename: the server answers 416 and nothing is re-sent."""
    dest = tmp_path / "fma_small.zip"
    (tmp_path / "fma_small.zip.part").write_bytes((served.root / "fma_small.zip").read_bytes())
    http_download.download_file(
        served.url + "fma_small.zip", dest, expected_sha1=served.sha1["fma_small"], progress=False, **FAST
    )
    assert sha1_file(dest) == served.sha1["fma_small"]
    assert [(r.status, r.sent) for r in served.gets()] == [(416, 0)]


def test_sha1_mismatch_on_resume_detects_corrupt_part_bytes(served, tmp_path):
    """The hash covers the bytes already on disk: a damaged .part is caught, not trusted."""
    size = (served.root / "fma_small.zip").stat().st_size
    part = tmp_path / "fma_small.zip.part"
    part.write_bytes(b"\xff" * (size // 2))
    with pytest.raises(ChecksumError, match="fma_small.zip.sha1-mismatch"):
        http_download.download_file(
            served.url + "fma_small.zip",
            tmp_path / "fma_small.zip",
            expected_sha1=served.sha1["fma_small"],
            progress=False,
            **FAST,
        )
    assert (tmp_path / "fma_small.zip.sha1-mismatch").stat().st_size == size


@pytest.mark.slow
def test_download_killed_with_sigkill_resumes_where_it_stopped(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    payload = np.random.default_rng(3).bytes(2 << 20)
    (root / "fma_small.zip").write_bytes(payload)
    part = tmp_path / "fma_small.zip.part"
    with ArchiveServer(root) as server:
        server.delay = 0.05  # 2 MiB in 64 KiB blocks: about 1.6 s, time to interrupt it
        url = server.url + "fma_small.zip"
        dest = str(tmp_path / "fma_small.zip")
        code = f"from genrekit.download.http import download_file as f; f({url!r}, {dest!r}, progress=False)"
        run_until(code, lambda: part.exists() and part.stat().st_size >= 256 << 10)
        have = part.stat().st_size
        assert 0 < have < len(payload) and part.read_bytes() == payload[:have]
        server.delay = 0.0
        digest = http_download.download_file(
            url, tmp_path / "fma_small.zip", expected_sha1=sha1_bytes(payload), progress=False, **FAST
        )
    assert digest == sha1_bytes(payload)
    last = server.gets()[-1]
    assert (last.range, last.status, last.sent) == (f"bytes={have}-", 206, len(payload) - have)
