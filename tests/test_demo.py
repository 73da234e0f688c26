"""The demo dataset: FMA's exact layout and formats, FMA-like statistics, defects, determinism, resume."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genrekit.datasets.demo.metadata import DATE_COLUMNS, LIST_COLUMNS, make_demo_metadata, write_tracks_csv
from genrekit.datasets.demo.writer import MARKER_NAME, PARTIAL_NAME, DemoInfo, write_demo_dataset
from genrekit.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[1]
TINY = dict(n_tracks=60, clip_seconds=2.0, seed=3, progress=False)

# The 52 columns of the real tracks.csv, in the file's order (shared/fma-real/README.md).
REAL_COLUMNS = (
    [("album", c) for c in "comments date_created date_released engineer favorites id information listens "
     "producer tags title tracks type".split()]
    + [("artist", c) for c in "active_year_begin active_year_end associated_labels bio comments date_created "
       "favorites id latitude location longitude members name related_projects tags website "
       "wikipedia_page".split()]
    + [("set", "split"), ("set", "subset")]
    + [("track", c) for c in "bit_rate comments composer date_created date_recorded duration favorites "
       "genre_top genres genres_all information interest language_code license listens lyricist number "
       "publisher tags title".split()]
)  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoInfo:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), workers=2, **TINY)


@pytest.fixture(scope="module")
def tracks(demo: DemoInfo) -> pd.DataFrame:
    """tracks.csv read the way FMA's utils.load reads it, list columns parsed."""
    df = pd.read_csv(demo.tracks_csv, index_col=0, header=[0, 1])
    for col in LIST_COLUMNS:
        df[col] = df[col].map(ast.literal_eval)
    return df


@pytest.fixture(scope="module")
def genres(demo: DemoInfo) -> pd.DataFrame:
    return pd.read_csv(demo.genres_csv, index_col=0)


@pytest.fixture(scope="module")
def default_meta() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_demo_metadata()


def _roots(genre_ids: list[int], genres: pd.DataFrame) -> set[int]:
    return {int(genres.loc[g, "top_level"]) for g in genre_ids}


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _checksums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([0-9a-f]{40})  (\d{3}/\d{6}\.mp3)", line)
        assert m, f"bad checksums line {line!r}"
        out[m.group(2)] = m.group(1)
    return out


# --- Layout and formats -------------------------------------------------------------------------------
def test_layout_and_file_names(demo: DemoInfo, tracks: pd.DataFrame) -> None:
    assert demo.metadata_dir == demo.root / "fma_metadata" and demo.audio_dir == demo.root / "fma_demo"
    for name in ("tracks.csv", "genres.csv", "checksums"):
        assert (demo.metadata_dir / name).is_file()
    files = sorted(p.relative_to(demo.audio_dir).as_posix() for p in demo.audio_dir.rglob("*.mp3"))
    expected = sorted(f"{t:06d}"[:3] + f"/{t:06d}.mp3" for t in tracks.index if t not in demo.missing_ids)
    assert files == expected
    assert not list(demo.root.rglob("*.part")), "temporary files left behind"
    assert (demo.root / MARKER_NAME).is_file() and not (demo.root / PARTIAL_NAME).exists()
    assert demo.n_tracks == len(tracks) == 60


def test_tracks_csv_has_the_real_header_and_columns(demo: DemoInfo, tracks: pd.DataFrame) -> None:
    head = demo.tracks_csv.read_text().splitlines()[:3]
    assert head[0].startswith(",album,album,") and head[1].startswith(",comments,date_created,")
    assert head[2] == "track_id" + "," * 52
    assert list(tracks.columns) == REAL_COLUMNS
    assert tracks.index.name == "track_id" and tracks.index.is_unique and tracks.index.is_monotonic_increasing
    for col in DATE_COLUMNS:
        values = pd.read_csv(demo.tracks_csv, index_col=0, header=[0, 1])[col].dropna()
        assert values.str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all(), col
    assert tracks[("track", "date_created")].notna().all()
    assert all(isinstance(v, list) for col in LIST_COLUMNS for v in tracks[col])
    assert set(tracks[("set", "split")]) == {"training", "validation", "test"}
    assert set(tracks[("set", "subset")]) <= {"small", "medium", "large"}


def test_genre_columns_follow_fma_rules(tracks: pd.DataFrame, genres: pd.DataFrame) -> None:
    for tid, row in tracks.iterrows():
        gl, ga, top = row[("track", "genres")], row[("track", "genres_all")], row[("track", "genre_top")]
        ancestors = set()
        for g in gl:
            while g != 0:
                ancestors.add(g)
                g = int(genres.loc[g, "parent"])
        assert sorted(ancestors) == ga, tid
        roots = _roots(gl, genres)
        if len(roots) == 1:
            assert top == genres.loc[roots.pop(), "title"], tid
        else:
            assert pd.isna(top), tid


def test_genres_csv_is_a_subset_of_the_real_tree(genres: pd.DataFrame, real_genres_csv: Path) -> None:
    real = pd.read_csv(real_genres_csv, index_col=0)
    assert list(genres.columns) == ["#tracks", "parent", "title", "top_level"] == list(real.columns)
    assert genres.index.name == "genre_id"
    cols = ["parent", "title", "top_level"]
    pd.testing.assert_frame_equal(genres[cols], real.loc[genres.index, cols])


def test_genre_tree_shape_and_counts(genres: pd.DataFrame, tracks: pd.DataFrame) -> None:
    assert (genres["parent"] == 0).sum() >= 8 and len(genres) >= 30
    depth = {g: 0 if p == 0 else None for g, p in genres["parent"].items()}
    while any(v is None for v in depth.values()):
        for g, p in genres["parent"].items():
            if depth[g] is None and depth[p] is not None:
                depth[g] = depth[p] + 1
    assert max(depth.values()) >= 2
    assert len({genres.loc[g, "top_level"] for g, d in depth.items() if d == 2}) >= 2
    counts = pd.Series([g for ga in tracks[("track", "genres_all")] for g in ga]).value_counts()
    assert (genres["#tracks"] == counts.reindex(genres.index, fill_value=0)).all()


# --- FMA-like statistics (metadata only: fast) -----------------------------------------------------
def test_top_genres_are_imbalanced_like_fma(default_meta: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tracks, genres = default_meta
    counts = tracks[("track", "genre_top")].value_counts()
    assert len(counts) == 16
    assert counts.max() >= 30 * counts.min()
    assert counts.index[0] == "Rock" and set(counts.index[:3]) == {"Rock", "Experimental", "Electronic"}
    assert counts["Easy Listening"] == counts.min()


def test_multi_root_tracks_have_no_genre_top(default_meta: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tracks, genres = default_meta
    n_roots = tracks[("track", "genres")].map(lambda gl: len(_roots(gl, genres)))
    multi = n_roots >= 2
    assert 0.2 < multi.mean() < 0.45
    assert tracks.loc[multi, ("track", "genre_top")].isna().all()
    assert tracks.loc[n_roots == 1, ("track", "genre_top")].notna().all()
    assert (tracks[("track", "genres")].map(len) >= 2).mean() > 0.3  # multi-label
    assert (n_roots == 0).any()  # and, as in FMA, a few tracks with no genre at all


@pytest.mark.parametrize("n_tracks", [20, 60, 600])
def test_split_is_artist_filtered(n_tracks: int) -> None:
    tracks, _ = make_demo_metadata(n_tracks, seed=5)
    splits_per_artist = tracks[("set", "split")].groupby(tracks[("artist", "id")]).nunique()
    assert (splits_per_artist == 1).all()
    shares = tracks[("set", "split")].value_counts(normalize=True)
    assert set(shares.index) == {"training", "validation", "test"}
    if n_tracks >= 600:
        assert 0.75 <= shares["training"] <= 0.85 and shares["validation"] >= 0.07 and shares["test"] >= 0.07


def test_subsets_nest_like_fma(default_meta: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tracks, _ = default_meta
    subset = tracks[("set", "subset")]
    assert list(subset.cat.categories) == ["small", "medium", "large"] and subset.cat.ordered
    small = tracks[subset == "small"]
    per_genre = small[("track", "genre_top")].value_counts()
    assert len(per_genre) == 8 and per_genre.nunique() == 1  # balanced like fma_small
    medium = tracks[subset <= "medium"]
    assert medium[("track", "genre_top")].notna().all()
    assert 0.15 < len(medium) / len(tracks) < 0.3


def test_metadata_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = (make_demo_metadata(100, seed=s)[0] for s in (7, 7, 8))
    for df, name in ((a, "a"), (b, "b"), (c, "c")):
        write_tracks_csv(df, tmp_path / f"{name}.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_write_tracks_csv_round_trips(tmp_path: Path) -> None:
    tracks, _ = make_demo_metadata(40, seed=1, long_text=True)
    write_tracks_csv(tracks, tmp_path / "tracks.csv")
    back = pd.read_csv(tmp_path / "tracks.csv", index_col=0, header=[0, 1])
    assert back.shape == (40, 52)
    for col in LIST_COLUMNS:
        assert back[col].map(ast.literal_eval).tolist() == tracks[col].tolist()
    for col in DATE_COLUMNS:
        written = pd.to_datetime(back[col]).astype("datetime64[s]")
        pd.testing.assert_series_equal(written, tracks[col].astype("datetime64[s]"), check_names=False)
    assert back[("artist", "bio")].dropna().str.contains("\r\n").any()  # multi-line quoted fields survive


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_tracks=5), dict(clip_seconds=0), dict(channels=3), dict(sample_rate=12345), dict(n_tracks=60.0)],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        write_demo_dataset(tmp_path, **{**TINY, **kwargs})
    assert not (tmp_path / MARKER_NAME).exists()


# --- Audio --------------------------------------------------------------------------------------------
def test_clips_decode_to_the_requested_length(demo: DemoInfo, tracks: pd.DataFrame) -> None:
    good = [t for t in tracks.index if t not in demo.defective_ids]
    assert len(good) >= 50
    for tid in good:
        path = demo.audio_dir / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
        assert path.read_bytes()[:3] == b"ID3"  # tagged like FMA's files
        audio, sr = sf.read(path, dtype="float32")
        assert sr == 22050 and audio.shape == (44100,), tid  # the default: 22,050 Hz mono
        # Peaks are rendered at -10 to -1 dBFS; LAME's low-pass at 22,050 Hz overshoots them a little.
        assert 0.01 < np.abs(audio).max() <= 1.25 and audio.std() > 1e-3


def test_defective_files_are_like_fmas(demo: DemoInfo, tracks: pd.DataFrame) -> None:
    def path(t: int) -> Path:
        return demo.audio_dir / f"{t:06d}"[:3] / f"{t:06d}.mp3"

    kinds = ("zero_length", "header_only", "truncated", "short", "missing")
    ids = [getattr(demo, f"{k}_ids") for k in kinds]
    assert all(len(i) >= 1 for i in ids)
    assert len(set(demo.defective_ids)) == sum(len(i) for i in ids)
    assert set(demo.defective_ids) <= set(tracks.index)
    for t in demo.zero_length_ids:
        assert path(t).stat().st_size == 0
    for t in demo.header_only_ids:
        assert path(t).read_bytes()[:3] == b"ID3" and path(t).stat().st_size < 3000
        with pytest.raises(sf.LibsndfileError):
            sf.read(path(t))
    for t in demo.truncated_ids:
        audio, _ = sf.read(path(t))
        assert 0 < len(audio) < 0.6 * 44100
    for t in demo.short_ids:
        audio, _ = sf.read(path(t))
        assert len(audio) == round(0.4 * 44100)
        assert tracks.loc[t, ("track", "duration")] < 30
    for t in demo.missing_ids:
        assert not path(t).exists()
    assert set(demo.undecodable_ids) == set(demo.zero_length_ids + demo.header_only_ids + demo.missing_ids)


def test_checksums_match_the_files(demo: DemoInfo) -> None:
    listed = _checksums(demo.checksums)
    on_disk = {p.relative_to(demo.audio_dir).as_posix() for p in demo.audio_dir.rglob("*.mp3")}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert _sha1(demo.audio_dir / rel) == digest, rel
    assert (demo.audio_dir / "checksums").read_bytes() == demo.checksums.read_bytes()


# Byte comparisons of the audio hold on one machine with one set of process settings only: the
# synthesizer's float32 sums go through BLAS and numpy's SIMD loops, whose kernels depend on the CPU
# (OpenBLAS's Haswell and SkylakeX kernels write different MP3s for 20 of TINY's 58 clips) and on
# BLAS's thread count (so in-process items run on one BLAS thread, as pool workers do:
# genrekit.workers.run_serial). No test compares them with bytes stored from another machine.
def test_same_seed_gives_the_same_bytes_whatever_the_workers(demo: DemoInfo, tmp_path: Path) -> None:
    again = write_demo_dataset(tmp_path, workers=1, **TINY)
    for name in ("tracks.csv", "genres.csv", "checksums"):
        assert (again.metadata_dir / name).read_bytes() == (demo.metadata_dir / name).read_bytes(), name
    assert again == DemoInfo.from_json(again.to_json(), again.root)
    assert again.defective_ids == demo.defective_ids


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next(
        (set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set()
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= _cpu_flags(),
    reason="needs AVX-512 to run Intel's kernels",
)
def test_same_bytes_whatever_the_workers_on_intel_avx512_blas_kernels(tmp_path: Path) -> None:
    # The kernels OpenBLAS picks on an Intel Xeon, forced here: on them, before workers=1 ran on
    # the process's BLAS threads, 092/092531.mp3 and 095/095332.mp3 differed from the pool's.
    code = (
        "from genrekit.datasets.demo.writer import write_demo_dataset\n"
        f"write_demo_dataset({str(tmp_path / 'one')!r}, workers=1, **{TINY!r})\n"
        f"write_demo_dataset({str(tmp_path / 'pool')!r}, workers=2, **{TINY!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_CORETYPE": "SkylakeX"}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=900)
    one, pool = (_checksums(tmp_path / name / "fma_metadata" / "checksums") for name in ("one", "pool"))
    assert set(one) == set(pool) and {rel for rel in one if one[rel] != pool[rel]} == set()


def test_fma_stereo_option(tmp_path: Path) -> None:
    info = write_demo_dataset(tmp_path, n_tracks=20, clip_seconds=1.0, sample_rate=44100, channels=2,
                              workers=1, progress=False)  # fmt: skip
    tid = next(t for t in pd.read_csv(info.tracks_csv, index_col=0, header=[0, 1]).index
               if t not in info.defective_ids)  # fmt: skip
    audio, sr = sf.read(info.audio_dir / f"{tid:06d}"[:3] / f"{tid:06d}.mp3")
    assert sr == 44100 and audio.shape == (44100, 2)
    assert np.abs(audio[:, 0] - audio[:, 1]).max() > 1e-3  # really stereo


def _bench_demo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_demo", REPO / "benchmarks" / "bench_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_demo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("sample_rate", "channels"), [(22050, 1), (44100, 2)])
def test_fast_renderer_matches_the_reference(sample_rate: int, channels: int) -> None:
    """The vectorized synthesizer makes main's sounds: same rng draws, same samples to float error."""
    from genrekit.datasets.demo.metadata import plan_demo
    from genrekit.datasets.demo.synth import PARAM_NAMES, render_clip

    reference = _bench_demo().render_clip_reference
    params = plan_demo(600, 0).params
    i_vib = list(PARAM_NAMES).index("vibrato")
    rows = [0, 37, 101, 222, 345, 480, 599]
    # Both tone paths are covered: harmonics with and without vibrato.
    assert {bool(params[r, i_vib] > 0) for r in rows} == {True, False}
    for r in rows:
        want = reference(params[r], 1.5, sample_rate, channels, np.random.default_rng([0, r, 3]))
        got = render_clip(params[r], 1.5, sample_rate, channels, np.random.default_rng([0, r, 3]))
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-6, r
        assert np.abs(want).max() > 0.05


# --- Idempotence, refusal and resume ----------------------------------------------------------------
def test_second_call_returns_without_writing(demo: DemoInfo) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo.root.rglob("*") if p.is_file()}
    assert write_demo_dataset(demo.root, workers=2, **TINY) == demo
    assert {p: p.stat().st_mtime_ns for p in demo.root.rglob("*") if p.is_file()} == before


def test_other_parameters_are_refused_then_overwritten(tmp_path: Path) -> None:
    small = dict(clip_seconds=0.5, progress=False, workers=1)
    first = write_demo_dataset(tmp_path, n_tracks=20, **small)
    with pytest.raises(DatasetError, match="overwrite"):
        write_demo_dataset(tmp_path, n_tracks=21, **small)
    assert write_demo_dataset(tmp_path, n_tracks=20, **small) == first
    second = write_demo_dataset(tmp_path, n_tracks=21, overwrite=True, **small)
    assert second.n_tracks == 21
    assert len(pd.read_csv(second.tracks_csv, index_col=0, header=[0, 1])) == 21
    assert json.loads((tmp_path / MARKER_NAME).read_text())["params"]["n_tracks"] == 21


def test_foreign_fma_folders_are_not_touched(tmp_path: Path) -> None:
    (tmp_path / "fma_metadata").mkdir()
    (tmp_path / "fma_metadata" / "tracks.csv").write_text("real data\n")
    with pytest.raises(DatasetError, match="did not write"):
        write_demo_dataset(tmp_path, **TINY)
    assert (tmp_path / "fma_metadata" / "tracks.csv").read_text() == "real data\n"


@pytest.mark.slow
def test_killed_generation_is_not_complete_and_resumes_to_the_same_bytes(
    demo: DemoInfo, tmp_path: Path
) -> None:
    root = tmp_path / "killed"
    code = (
        "from genrekit.datasets.demo.writer import write_demo_dataset\n"
        f"write_demo_dataset({str(root)!r}, workers=1, **{TINY!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(root.rglob("*.mp3"))) < 10:
            assert proc.poll() is None, "generation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (root / MARKER_NAME).exists() and (root / PARTIAL_NAME).exists()
    assert not (root / "fma_metadata" / "checksums").exists()

    resumed = write_demo_dataset(root, workers=1, **TINY)
    assert resumed.checksums.read_bytes() == demo.checksums.read_bytes()
    assert resumed.tracks_csv.read_bytes() == demo.tracks_csv.read_bytes()
    assert not list(root.rglob("*.part"))


# --- Learnable, not trivial --------------------------------------------------------------------------
def _band_features(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mean and spread of log energies in 32 log-spaced bands, and spectral flux: a weak baseline."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 1024)[::512] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(1024, 1 / sr)
    edges = np.geomspace(30, sr / 2, 33)
    bands = np.stack(
        [power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)],
        1,
    )
    logb = np.log(bands + 1e-10)
    flux = np.maximum(np.diff(logb, axis=0), 0).sum(1)
    return np.concatenate([logb.mean(0), logb.std(0), [flux.mean(), flux.std()]])


@pytest.mark.slow
def test_top_genres_are_learnable_but_not_trivially(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    info = write_demo_dataset(tmp_path, n_tracks=160, clip_seconds=2.0, sample_rate=22050, channels=1,
                              workers=2, progress=False)  # fmt: skip
    tracks = pd.read_csv(info.tracks_csv, index_col=0, header=[0, 1])
    tracks = tracks[tracks[("track", "genre_top")].notna() & ~tracks.index.isin(info.defective_ids)]
    feats = [
        _band_features(sf.read(info.audio_dir / f"{t:06d}"[:3] / f"{t:06d}.mp3")[0], 22050)
        for t in tracks.index
    ]
    y = tracks[("track", "genre_top")].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    pred = cross_val_predict(model, np.stack(feats), y, groups=tracks[("artist", "id")], cv=GroupKFold(5))
    accuracy = (pred == y).mean()
    majority = pd.Series(y).value_counts(normalize=True).iloc[0]
    assert accuracy > majority + 0.2, (accuracy, majority)
    assert accuracy < 0.95, accuracy


# --- Labels and sound agree ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_tracks", [600, 1800])
def test_medium_target_is_the_genre_that_shaped_the_sound(tmp_path: Path, n_tracks: int) -> None:
    """Defect 8 of issue 13: the label rule and the generator pick the same medium genre."""
    from genrekit.datasets.demo.metadata import plan_demo, write_genres_csv
    from genrekit.datasets.fma import derive_targets, load_genres, load_tracks
    from genrekit.datasets.labels import MASKED, GenreTree

    plan = plan_demo(n_tracks, 0)
    write_tracks_csv(plan.tracks, tmp_path / "tracks.csv")
    write_genres_csv(plan.genres, tmp_path / "genres.csv")
    tree = GenreTree(load_genres(tmp_path / "genres.csv"))
    targets = derive_targets(load_tracks(tmp_path / "tracks.csv"), tree)
    assert (targets.index.to_numpy() == plan.tracks.index.to_numpy()).all()
    medium = targets["medium"].to_numpy()
    labelled = medium != MASKED
    assert labelled.mean() > 0.7
    sound = plan.sound_genre
    wrong = np.flatnonzero(labelled & (medium != sound))
    assert len(wrong) == 0, (
        f"{len(wrong)} of {labelled.sum()} tracks, e.g. {targets.index[wrong[:5]].tolist()}"
    )


def test_max_imbalance_caps_the_top_genre_ratio() -> None:
    """max_imbalance raises the small genres' shares (FMA's shape capped); None keeps FMA's shape."""
    from genrekit.datasets.demo.metadata import make_demo_metadata

    fma_shape, _ = make_demo_metadata(2000, seed=0)
    capped, _ = make_demo_metadata(2000, seed=0, max_imbalance=20)
    again, _ = make_demo_metadata(2000, seed=0, max_imbalance=None)
    assert fma_shape.equals(again)
    before = fma_shape["track", "genre_top"].value_counts()
    after = capped["track", "genre_top"].value_counts()
    assert before.max() / before.min() > 100
    # Root counts are within 1/20 of the largest; 70% of a root's tracks have a single top genre.
    assert after.max() / after.min() < 25 and after.min() >= 15
    assert after.idxmax() == before.idxmax() == "Rock"
    with pytest.raises(ConfigError, match="max_imbalance"):
        make_demo_metadata(100, seed=0, max_imbalance=0.5)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clip_that_cannot_be_written_is_named_after_the_others_are_done(
    workers: int, tmp_path: Path
) -> None:
    from genrekit.datasets.demo.writer import _run_jobs

    (tmp_path / "file").write_text("not a folder")
    jobs = [
        {"track_id": 1, "path": str(tmp_path / "a" / "000001.mp3"), "kind": "zero_length"},
        {"track_id": 2, "path": str(tmp_path / "file" / "000002.mp3"), "kind": "zero_length"},
        {"track_id": 3, "path": str(tmp_path / "b" / "000003.mp3"), "kind": "zero_length"},
    ]
    done = []
    with pytest.raises(DatasetError, match=r"1 demo clip\(s\) not written: .*file/000002\.mp3: "):
        done.extend(_run_jobs(jobs, workers, progress=False))
    assert [tid for tid, _ in done] == [1, 3]
    assert (tmp_path / "a" / "000001.mp3").read_bytes() == (tmp_path / "b" / "000003.mp3").read_bytes() == b""
