"""Download, verify and extract against a real HTTP server on 127.0.0.1 and real FMA-format zips."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from download_helpers import ArchiveServer, sha1_bytes, sha1_file, write_fma_zip, write_zip_with

import setup_fma_dataset
from genrekit import archives, download, http_download
from genrekit.download import Archive
from genrekit.errors import ChecksumError, DownloadError, UnsafeArchiveError

REPO = Path(__file__).resolve().parents[1]
FAST = {"backoff": 0.001, "timeout": 10}


@pytest.fixture(autouse=True)
def _drop_script_log_handlers():
    """main() sets up console logging bound to the stderr of its test; do not leak it into the next."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_genrekit", False):
            root.removeHandler(handler)
            handler.close()


def _error_line(err: str) -> str:
    """The one ``error: ...`` line a failed script prints (log lines may come before it)."""
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


@pytest.fixture(scope="session")
def mp3s() -> dict[str, bytes]:
    """Three tiny real MP3s (0.2 s of noise at 22,050 Hz) in FMA's NNN/NNNNNN.mp3 layout."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    out = {}
    for track_id in (2, 5, 140):
        buf = io.BytesIO()
        sf.write(buf, rng.uniform(-0.3, 0.3, 4410), 22050, format="MP3", subtype="MPEG_LAYER_III")
        out[f"{track_id:06d}"[:3] + f"/{track_id:06d}.mp3"] = buf.getvalue()
    return out


METADATA_FILES = {
    "tracks.csv": b",album,track\n,id,genre_top\ntrack_id,,\n2,1,Hip-Hop\n5,1,Hip-Hop\n140,2,Folk\n",
    "genres.csv": b"genre_id,#tracks,parent,title,top_level\n17,1,0,Folk,17\n21,2,0,Hip-Hop,21\n",
}


@pytest.fixture
def served(tmp_path: Path, mp3s: dict[str, bytes]):
    """A server over a folder holding fma_metadata.zip, fma_small.zip and fma_large.zip."""
    root = tmp_path / "server"
    root.mkdir()
    table = dict(download.ARCHIVES)
    sha1 = {}
    for key, top, files in (
        ("metadata", "fma_metadata", METADATA_FILES),
        ("fma_small", "fma_small", dict(list(mp3s.items())[:2])),
        ("fma_large", "fma_large", mp3s),
    ):
        sha1[key] = write_fma_zip(root / f"{top}.zip", top, files)
        table[key] = Archive(key, f"{top}.zip", sha1[key], (root / f"{top}.zip").stat().st_size)
    with ArchiveServer(root) as server:
        server.archives = table
        server.sha1 = sha1
        yield server


def _argv(subset: str, data_dir: Path, base_url: str | Path, *extra: str) -> list[str]:
    """setup_fma_dataset.py's arguments for ``subset`` from ``base_url``, without progress bars."""
    return [
        "--subset",
        subset,
        "--data_dir",
        str(data_dir),
        "--base_url",
        str(base_url),
        "--no_progress",
        *extra,
    ]


def _cli(server: ArchiveServer, data_dir: Path, subset: str, *extra: str) -> list[str]:
    keys = download.SUBSETS[subset]
    sha1s = [f"--sha1={server.archives[k].filename}={server.sha1[k]}" for k in keys]
    return _argv(subset, data_dir, server.url, *sha1s, *extra)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- The command line, start to finish ------------------------------------------------------------


def test_full_setup_with_symlinks(served, tmp_path, monkeypatch, mp3s, capsys):
    monkeypatch.chdir(tmp_path)  # the default layout (fma_data/extracted/...) is relative to here
    data_dir = tmp_path / "elsewhere"
    assert setup_fma_dataset.main(_cli(served, data_dir, "all", "--symlinks")) == 0

    large = data_dir / "extracted" / "fma_large" / "fma_large"
    meta = data_dir / "extracted" / "metadata" / "fma_metadata"
    assert {k: v for k, v in _tree(large).items() if k.endswith(".mp3")} == mp3s
    assert (meta / "tracks.csv").read_bytes() == METADATA_FILES["tracks.csv"]
    assert sha1_file(data_dir / "fma_large.zip") == served.sha1["fma_large"]
    # The links sit at the scripts' defaults and lead to the extracted folders.
    for link, target in (
        (tmp_path / "fma_data/extracted/metadata/fma_metadata", meta),
        (tmp_path / "fma_data/extracted/fma_large/fma_large", large),
    ):
        assert link.is_symlink() and link.resolve() == target.resolve()
    assert (tmp_path / "fma_data/extracted/fma_large/fma_large/000/000002.mp3").read_bytes() == mp3s[
        "000/000002.mp3"
    ]
    marker = json.loads((data_dir / "extracted/fma_large/fma_large.complete.json").read_text())
    assert marker["sha1"] == served.sha1["fma_large"] and marker["checksum_problems"] == 0
    assert not list(data_dir.rglob("*.part")) and not list(data_dir.rglob("*.extracting"))
    out = capsys.readouterr().out
    assert (
        "--metadata fma_data/extracted/metadata/fma_metadata --audio fma_data/extracted/fma_large/fma_large"
        in out
    )

    # Idempotent: links already right are left as they are.
    assert setup_fma_dataset.main(_cli(served, data_dir, "all", "--symlinks")) == 0
    assert "already in place" in capsys.readouterr().out


def test_second_run_is_a_quick_no_op(served, tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_small")) == 0
    mp3 = data_dir / "extracted/fma_small/fma_small/000/000002.mp3"
    before = mp3.stat().st_mtime_ns
    requests_before = len(served.log)
    capsys.readouterr()

    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_small")) == 0
    assert len(served.log) == requests_before  # not even a HEAD
    assert mp3.stat().st_mtime_ns == before
    assert "fma_small: already in place" in capsys.readouterr().out


def test_cleanup_deletes_the_archive_only_after_a_checked_extraction(served, tmp_path):
    data_dir = tmp_path / "data"
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_small", "--cleanup")) == 0
    assert not (data_dir / "fma_small.zip").exists()
    assert (data_dir / "extracted/fma_small/fma_small/000/000005.mp3").is_file()
    assert (data_dir / "extracted/fma_small/fma_small.complete.json").is_file()
    gets = len(served.gets())
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_small", "--cleanup")) == 0
    assert len(served.gets()) == gets  # the deleted archive is not fetched again


def test_interrupted_download_resumes_with_range_on_the_next_run(served, tmp_path, capsys):
    data_dir = tmp_path / "data"
    size = (served.root / "fma_large.zip").stat().st_size
    cut = size // 3
    served.cut_next = [cut]
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_large", "--retries", "0")) == 2
    assert "run the same command again to resume" in _error_line(capsys.readouterr().err)
    assert (data_dir / "fma_large.zip.part").stat().st_size == cut
    assert not (data_dir / "extracted").exists()

    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_large")) == 0
    first, second = served.gets()
    assert (first.range, first.sent) == (None, cut)
    assert (second.range, second.status, second.sent) == (f"bytes={cut}-", 206, size - cut)  # no byte twice
    assert sha1_file(data_dir / "fma_large.zip") == served.sha1["fma_large"]


def test_404_is_one_clear_error_without_retries(served, tmp_path, capsys):
    (served.root / "fma_medium.zip").unlink(missing_ok=True)
    argv = _argv("fma_medium", tmp_path / "d", served.url)
    assert setup_fma_dataset.main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert "fma_medium.zip was not found (HTTP 404)" in err and "--base_url" in err
    assert [(r.method, r.status) for r in served.log] == [("HEAD", 404)]  # found out before any download
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


def test_404_on_download_is_not_retried(served, tmp_path):
    with pytest.raises(DownloadError, match=r"fma_full.zip was not found \(HTTP 404\)"):
        http_download.download_file(
            served.url + "fma_full.zip", tmp_path / "fma_full.zip", progress=False, **FAST
        )
    assert [r.status for r in served.gets()] == [404]


def test_wrong_sha1_keeps_the_file_aside_and_says_what_to_do(served, tmp_path, capsys):
    data_dir = tmp_path / "data"
    argv = _argv("metadata", data_dir, served.url)
    assert setup_fma_dataset.main([*argv, "--sha1", "0" * 40]) == 2
    err = _error_line(capsys.readouterr().err)
    assert f"sha1 {served.sha1['metadata']} is not the expected {'0' * 40}" in err
    assert "delete it and run the same command again" in err
    bad = data_dir / "fma_metadata.zip.sha1-mismatch"
    assert sha1_file(bad) == served.sha1["metadata"]
    assert not (data_dir / "fma_metadata.zip").exists() and not (data_dir / "extracted").exists()


def test_published_sha1_is_checked_by_default(served, tmp_path, capsys):
    """Without --sha1, our test archive is not the published fma_metadata.zip and must be refused."""
    argv = _argv("metadata", tmp_path / "d", served.url)
    assert setup_fma_dataset.main(argv) == 2
    assert download.ARCHIVES["metadata"].sha1 in capsys.readouterr().err
    assert setup_fma_dataset.main([*argv, "--no_verify"]) == 0
    assert "sha1 will not be checked" in capsys.readouterr().err


def test_archive_given_with_archive_flag_needs_no_server(served, tmp_path, mp3s):
    own = tmp_path / "Downloads" / "my_copy.zip"
    own.parent.mkdir()
    own.write_bytes((served.root / "fma_small.zip").read_bytes())
    argv = [
        "--subset",
        "fma_small",
        "--data_dir",
        str(tmp_path / "d"),
        "--base_url",
        "http://127.0.0.1:9/nothing/",
    ]
    argv += ["--archive", str(own), "--sha1", served.sha1["fma_small"], "--no_progress"]
    assert setup_fma_dataset.main(argv) == 0
    assert (tmp_path / "d/extracted/fma_small/fma_small/000/000005.mp3").read_bytes() == mp3s[
        "000/000005.mp3"
    ]
    assert own.exists() and served.log == []


def test_local_folder_as_base_url_is_used_in_place_and_never_cleaned(served, tmp_path):
    argv = ["--subset", "fma_small", "--data_dir", str(tmp_path / "d"), "--base_url", str(served.root)]
    argv += ["--sha1", served.sha1["fma_small"], "--no_progress", "--cleanup"]
    assert setup_fma_dataset.main(argv) == 0
    assert (served.root / "fma_small.zip").exists() and not (tmp_path / "d/fma_small.zip").exists()
    assert (tmp_path / "d/extracted/fma_small/fma_small/checksums").is_file()


def test_smaller_subset_symlinks_then_the_real_fma_large_replaces_them(served, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data_dir = Path("fma_data")  # the default: metadata and fma_large land at the defaults directly
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_small", "--symlinks")) == 0
    link = Path("fma_data/extracted/fma_large/fma_large")
    assert link.is_symlink() and link.resolve() == Path("fma_data/extracted/fma_small/fma_small").resolve()
    assert not os.path.isabs(os.readlink(link))
    assert "use the small subset" in capsys.readouterr().out

    assert setup_fma_dataset.main(_cli(served, data_dir, "all", "--symlinks")) == 0
    assert not link.is_symlink() and (link / "000/000140.mp3").is_file()
    assert not (
        Path("fma_data/extracted/fma_small/fma_small") / "000/000140.mp3"
    ).exists()  # nothing written through it
    meta = Path("fma_data/extracted/metadata/fma_metadata")
    assert meta.is_dir() and not meta.is_symlink()
    assert "already in place" in capsys.readouterr().out


def test_not_enough_disk_space_stops_before_any_download(served, tmp_path, capsys):
    huge = {**served.archives, "fma_small": Archive("fma_small", "fma_small.zip", None, 1, expansion=1e15)}
    with pytest.raises(DownloadError, match="not enough free disk space"):
        download.setup_dataset(
            "fma_small", tmp_path / "d", archives=huge, base_url=served.url, progress=False
        )
    assert served.gets() == []


def test_analyze_runs_the_inspector_on_the_result(served, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("fma_inspector")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fma_inspector", fake)
    data_dir = tmp_path / "data"
    assert setup_fma_dataset.main(_cli(served, data_dir, "all", "--analyze")) == 0
    meta, audio = data_dir / "extracted/metadata/fma_metadata", data_dir / "extracted/fma_large/fma_large"
    assert calls == [["--metadata", str(meta), "--audio", str(audio)]]


def test_demo_subset(tmp_path, capsys):
    code = setup_fma_dataset.main(
        [
            "--subset",
            "demo",
            "--data_dir",
            str(tmp_path / "fma_data"),
            "--demo_tracks",
            "20",
            "--demo_seconds",
            "1",
        ]
    )
    try:
        import genrekit.demo  # noqa: F401
    except ImportError:
        assert code == 1 and "demo dataset is not available yet" in capsys.readouterr().err
        return
    assert code == 0
    demo = tmp_path / "fma_data" / "demo"
    assert (demo / "fma_metadata" / "tracks.csv").is_file() and list((demo / "fma_demo").rglob("*.mp3"))
    assert f"--metadata {demo / 'fma_metadata'} --audio {demo / 'fma_demo'}" in capsys.readouterr().out


def test_sha1_override_errors():
    with pytest.raises(download.DatasetError, match="write --sha1 NAME=SHA1"):
        download.archives_for("all", sha1_overrides={"": "a" * 40})
    with pytest.raises(download.DatasetError, match="not a sha1"):
        download.archives_for("metadata", sha1_overrides={"": "abc"})
    got = download.archives_for("all", sha1_overrides={"fma_large.zip": "B" * 40})
    assert [a.sha1 for a in got] == [download.ARCHIVES["metadata"].sha1, "b" * 40]


# --- download_file -----------------------------------------------------------------------------------


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


# --- extract_archive ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "symlink_to", "cause"),
    [
        ("fma_small/../../evil.txt", None, "'..'"),
        ("/tmp/genrekit_evil.txt", None, "absolute path"),
        ("fma_small/000/link.mp3", "/etc/passwd", "symbolic link"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path, name, symlink_to, cause):
    archive = write_zip_with(tmp_path / "bad.zip", name, symlink_to=symlink_to)
    dest = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=rf"bad.zip: refusing to extract member .*{cause}"):
        archives.extract_archive(archive, dest, progress=False)
    assert list(dest.rglob("*")) == []
    assert not (tmp_path / "out" / "evil.txt").exists() and not Path("/tmp/genrekit_evil.txt").exists()


def test_extraction_resumes_and_writes_atomically(tmp_path, mp3s):
    archive = tmp_path / "fma_large.zip"
    write_fma_zip(archive, "fma_large", mp3s)
    dest = tmp_path / "out"
    # An interrupted run left one finished file and one temp file of a member it was writing.
    done = dest / "fma_large/000/000002.mp3"
    done.parent.mkdir(parents=True)
    done.write_bytes(mp3s["000/000002.mp3"])
    (dest / "fma_large/000/000005.mp3.extracting").write_bytes(b"half")
    first = archives.extract_archive(archive, dest, progress=False)
    assert (first.skipped, first.extracted, first.files) == (1, 4, 5)
    assert "fma_large/000/000002.mp3" not in first.sha1s
    assert first.sha1s["fma_large/000/000005.mp3"] == sha1_bytes(mp3s["000/000005.mp3"])
    assert not list(dest.rglob("*.extracting"))
    tree = _tree(dest / "fma_large")
    assert sorted(tree) == sorted(["README.txt", "checksums", *mp3s])
    assert {rel: tree[rel] for rel in mp3s} == mp3s
    again = archives.extract_archive(archive, dest, progress=False)
    assert (again.skipped, again.extracted) == (5, 0)


def test_damaged_member_is_reported_after_the_others_are_extracted(tmp_path, mp3s):
    archive = tmp_path / "fma_large.zip"
    write_fma_zip(archive, "fma_large", mp3s)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("fma_large/000/000005.mp3")
    raw = bytearray(archive.read_bytes())
    middle = (
        info.header_offset + 30 + len(info.filename) + 20 + info.compress_size // 2
    )  # inside the bz2 data
    raw[middle] ^= 0xFF
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    with pytest.raises(
        ChecksumError, match=r"1 member\(s\) could not be read \(first: fma_large/000/000005.mp3"
    ):
        archives.extract_archive(archive, dest, progress=False)
    assert not (dest / "fma_large/000/000005.mp3").exists()
    assert (dest / "fma_large/000/000002.mp3").read_bytes() == mp3s["000/000002.mp3"]
    assert not list(dest.rglob("*.extracting"))


# --- The checksums pass ------------------------------------------------------------------------------


def _report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_checksums_pass_reports_mismatch_and_missing_without_aborting(tmp_path, mp3s):
    server_root = tmp_path / "srv"
    server_root.mkdir()
    table = {rel: sha1_bytes(data) for rel, data in mp3s.items()}
    table["000/000005.mp3"] = "f" * 40  # the archive's own list disagrees with one file
    table["099/099134.mp3"] = "e" * 40  # listed but not in the archive
    sha1 = write_fma_zip(server_root / "fma_small.zip", "fma_small", mp3s, checksums=table)
    data_dir = tmp_path / "d"
    argv = _argv("fma_small", data_dir, server_root, "--sha1", sha1)
    assert setup_fma_dataset.main(argv) == 0
    out = data_dir / "extracted" / "fma_small"
    rows = _report(out / "fma_small_checksum_problems.csv")
    assert [(r["path"], r["status"]) for r in rows] == [
        ("000/000005.mp3", "mismatch"),
        ("099/099134.mp3", "missing"),
    ]
    assert rows[0]["actual_sha1"] == sha1_bytes(mp3s["000/000005.mp3"])
    assert json.loads((out / "fma_small.complete.json").read_text())["checksum_problems"] == 2
    assert (out / "fma_small/000/000140.mp3").read_bytes() == mp3s["000/000140.mp3"]


def test_corrupted_extracted_file_is_found_and_extracted_again(served, tmp_path, mp3s):
    data_dir = tmp_path / "d"
    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_large")) == 0
    out = data_dir / "extracted" / "fma_large"
    victim = out / "fma_large/000/000005.mp3"
    # An interrupted extraction (no marker yet) left a file of the right size but wrong content.
    (out / "fma_large.complete.json").unlink()
    victim.write_bytes(bytes(b ^ 0x55 for b in victim.read_bytes()))

    assert setup_fma_dataset.main(_cli(served, data_dir, "fma_large")) == 0
    assert victim.read_bytes() == mp3s["000/000005.mp3"]
    rows = _report(out / "fma_large_checksum_problems.csv")
    assert [(r["path"], r["status"]) for r in rows] == [("000/000005.mp3", "repaired")]


def test_verify_checksums_finds_a_damaged_file_on_disk(tmp_path):
    (tmp_path / "000").mkdir()
    (tmp_path / "000/000002.mp3").write_bytes(b"abc")
    (tmp_path / "000/000005.mp3").write_bytes(b"def")
    table = {
        "000/000002.mp3": sha1_bytes(b"abc"),
        "000/000005.mp3": sha1_bytes(b"xyz"),
        "000/000009.mp3": "0" * 40,
    }
    problems = archives.verify_checksums(tmp_path, table, progress=False)
    assert [(p.path, p.status) for p in problems] == [
        ("000/000005.mp3", "mismatch"),
        ("000/000009.mp3", "missing"),
    ]


def test_read_checksums_parses_the_real_fma_file(fma_real):
    table = archives.read_checksums(fma_real / "fma_metadata" / "checksums")
    assert table["genres.csv"] == sha1_file(fma_real / "fma_metadata" / "genres.csv")
    assert len(table) == 10


# --- Real interruptions: a process killed with SIGKILL ---------------------------------------------


def _run_until(code: str, ready, timeout: float = 60.0) -> subprocess.Popen:
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
        code = f"from genrekit.http_download import download_file as f; f({url!r}, {dest!r}, progress=False)"
        _run_until(code, lambda: part.exists() and part.stat().st_size >= 256 << 10)
        have = part.stat().st_size
        assert 0 < have < len(payload) and part.read_bytes() == payload[:have]
        server.delay = 0.0
        digest = http_download.download_file(
            url, tmp_path / "fma_small.zip", expected_sha1=sha1_bytes(payload), progress=False, **FAST
        )
    assert digest == sha1_bytes(payload)
    last = server.gets()[-1]
    assert (last.range, last.status, last.sent) == (f"bytes={have}-", 206, len(payload) - have)


@pytest.mark.slow
def test_extraction_killed_with_sigkill_leaves_no_half_file_and_resumes(tmp_path):
    rng = np.random.default_rng(4)
    files = {f"000/{i:06d}.mp3": rng.bytes(96 << 10) for i in range(24)}
    archive = tmp_path / "fma_small.zip"
    write_fma_zip(archive, "fma_small", files)
    dest = tmp_path / "out"
    done = lambda: (
        [p for p in (dest / "fma_small/000").glob("*.mp3")] if (dest / "fma_small/000").is_dir() else []
    )
    # Tiny reads make the extraction slow enough to be interrupted in the middle.
    code = "from genrekit.archives import extract_archive as x; "
    code += f"x({str(archive)!r}, {str(dest)!r}, progress=False, chunk_size=8)"
    _run_until(code, lambda: len(done()) >= 3)
    finished = done()
    assert 3 <= len(finished) < len(files)
    for path in finished:  # whatever has a member's name is the whole member
        assert path.read_bytes() == files[f"000/{path.name}"]
    result = archives.extract_archive(archive, dest, progress=False)
    assert result.skipped >= len(finished) and result.extracted == len(files) + 2 - result.skipped
    assert {f"000/{p.name}": p.read_bytes() for p in done()} == files
    assert not list(dest.rglob("*.extracting"))
