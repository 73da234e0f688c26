"""extract_archive and the checksums pass on real FMA-format zips: safety, resume, damage, SIGKILL."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from download_helpers import (
    folder_tree,
    run_until,
    sha1_bytes,
    sha1_file,
    write_fma_zip,
    write_zip_with,
)

from genrekit.download import archives
from genrekit.errors import ChecksumError, UnsafeArchiveError

pytest_plugins = ("download_fixtures",)  # the mp3s and served fixtures


# --- extract_archive ------------------------------------------------------------------------------


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
    tree = folder_tree(dest / "fma_large")
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


# --- The checksums pass ---------------------------------------------------------------------------


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


# --- Real interruptions: a process killed with SIGKILL --------------------------------------------


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
    code = "from genrekit.download.archives import extract_archive as x; "
    code += f"x({str(archive)!r}, {str(dest)!r}, progress=False, chunk_size=8)"
    run_until(code, lambda: len(done()) >= 3)
    finished = done()
    assert 3 <= len(finished) < len(files)
    for path in finished:  # whatever has a member's name is the whole member
        assert path.read_bytes() == files[f"000/{path.name}"]
    result = archives.extract_archive(archive, dest, progress=False)
    assert result.skipped >= len(finished) and result.extracted == len(files) + 2 - result.skipped
    assert {f"000/{p.name}": p.read_bytes() for p in done()} == files
    assert not list(dest.rglob("*.extracting"))
