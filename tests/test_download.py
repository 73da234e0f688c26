"""Download, verify and extract against a real HTTP server on 127.0.0.1 and real FMA-format zips."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import pytest
from download_helpers import (
    METADATA_FILES,
    ArchiveServer,
    folder_tree,
    sha1_bytes,
    sha1_file,
    write_fma_zip,
)

import setup_fma_dataset
from genrekit.download import setup as download
from genrekit.download.setup import Archive
from genrekit.errors import DownloadError

pytest_plugins = ("download_fixtures",)  # the mp3s and served fixtures

REPO = Path(__file__).resolve().parents[1]


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


# --- The command line, start to finish ------------------------------------------------------------


def test_full_setup_with_symlinks(served, tmp_path, monkeypatch, mp3s, capsys):
    monkeypatch.chdir(tmp_path)  # the default layout (fma_data/extracted/...) is relative to here
    data_dir = tmp_path / "elsewhere"
    assert setup_fma_dataset.main(_cli(served, data_dir, "all", "--symlinks")) == 0

    large = data_dir / "extracted" / "fma_large" / "fma_large"
    meta = data_dir / "extracted" / "metadata" / "fma_metadata"
    assert {k: v for k, v in folder_tree(large).items() if k.endswith(".mp3")} == mp3s
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
    from genrekit.commands import inspect as inspector

    monkeypatch.setattr(inspector, "main", lambda argv: calls.append(argv) or 0)
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
        import genrekit.datasets.demo.writer  # noqa: F401
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


# --- extract_archive ---------------------------------------------------------------------------------


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


# --- Real interruptions: a process killed with SIGKILL ---------------------------------------------
