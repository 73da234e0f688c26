"""Fixtures of test_download, test_http_download and test_archives (loaded with ``pytest_plugins``).

Kept apart from download_helpers, which the tests import directly, so that pytest can load this
module as a plugin before anything imports it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from download_helpers import METADATA_FILES, ArchiveServer, write_fma_zip

from genrekit.download import setup as download
from genrekit.download.setup import Archive


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
