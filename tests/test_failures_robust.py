"""Rough edges a new user hits (issue 18): cut metadata, cut clips, unresolvable paths, decoder
noise on the console, and what the quick start's features step remembers and prints."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.datasets import fma
from genrekit.errors import DatasetError, TruncatedAudioError
from genrekit.features.mel import FeatureParams, decodable_length, load_segments

REPO = Path(__file__).resolve().parents[1]


# --- 1. tracks.csv cut short ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_tracks_csv(tmp_path_factory) -> tuple[Path, bytes]:
    """A generated tracks.csv in FMA's full 52-column layout, with long multi-line text fields."""
    from genrekit.datasets.demo.metadata import make_demo_metadata, write_tracks_csv

    path = tmp_path_factory.mktemp("meta") / "tracks.csv"
    tracks, _ = make_demo_metadata(120, seed=3, long_text=True)
    write_tracks_csv(tracks, path)
    return path, path.read_bytes()


def _record_ends(data: bytes) -> list[int]:
    """Byte offsets where each CSV record ends, found by Python's csv module (the reference)."""
    consumed = [0]

    def lines():
        for line in data.decode("utf-8").splitlines(keepends=True):
            consumed[0] += len(line.encode("utf-8"))
            yield line

    ends = []
    for _ in csv.reader(lines()):
        ends.append(consumed[0])
    return ends


def test_cut_tracks_csv_is_refused_at_every_cut_or_read_whole(full_tracks_csv, tmp_path):
    path, data = full_tracks_csv
    full = fma.load_tracks(path)
    ends = _record_ends(data)
    assert len(ends) == 3 + len(full)  # 3 header lines, then one record per track
    # Cut points: every 1/50 of the file; inside and just after line feeds within quoted
    # multi-line fields; just before a record's line feed; exactly at record ends.
    cuts = {len(data) * k // 50 for k in range(1, 50)}
    starts = [0, *ends[:-1]]
    multiline = [(s, e) for s, e in zip(starts[3:], ends[3:], strict=True) if data[s:e].count(b"\n") > 1]
    assert len(multiline) >= 5, "the fixture must hold quoted multi-line fields"
    for s, e in multiline[:8]:
        inner = data.index(b"\n", s)
        cuts |= {inner, inner + 1, e - 1}
    cuts |= set(ends[3:12]) | {ends[1], ends[2] - 3}
    cut_path = tmp_path / "tracks.csv"
    refused = kept = 0
    for n in sorted(cuts):
        cut_path.write_bytes(data[:n])
        complete = sum(1 for e in ends if e <= n)
        if n in ends and complete > 3:  # a file of whole rows: indistinguishable from a short one
            tracks = fma.load_tracks(cut_path)
            assert tracks.index.tolist() == full.index[: complete - 3].tolist()
            assert tracks.equals(full.iloc[: complete - 3]) or tracks.astype(str).equals(
                full.iloc[: complete - 3].astype(str)
            )
            kept += 1
            continue
        with pytest.raises(DatasetError) as info:
            fma.load_tracks(cut_path)
        message = str(info.value)
        assert message.startswith(f"{cut_path}: ") and "\n" not in message
        if complete >= 3:
            assert f"ends inside row {complete - 2} " in message, (n, message)
            assert f"(track_id {full.index[complete - 3]})" in message, (n, message)
        refused += 1
    assert refused > 60 and kept >= 9


def test_whole_tracks_csv_without_final_newline_is_refused(full_tracks_csv, tmp_path):
    """The last field could be cut anywhere: a file not ending its last row is not trusted."""
    _, data = full_tracks_csv
    path = tmp_path / "tracks.csv"
    path.write_bytes(data[:-1])
    with pytest.raises(DatasetError, match="ends inside row 120 "):
        fma.load_tracks(path)


# --- 2. a genuine clip cut short --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_clips(real_clip, tmp_path_factory) -> dict[str, Path]:
    """The genuine FMA clip 000002.mp3 cut at 40% (about 12 s of music), 3% (0.85 s) and 1%."""
    root = tmp_path_factory.mktemp("cut")
    data = real_clip.read_bytes()
    out = {}
    for name, fraction in (("cut40", 0.40), ("cut3", 0.03), ("cut1", 0.01)):
        out[name] = root / f"{name}.mp3"
        out[name].write_bytes(data[: int(len(data) * fraction)])
    return out


def test_truncated_clip_is_refused_strictly_and_used_with_a_note(cut_clips, tmp_path):
    params = FeatureParams()
    path = cut_clips["cut40"]
    with pytest.raises(TruncatedAudioError, match="header declares 1321967 samples"):
        load_segments(path, params)
    decodable = decodable_length(path)
    assert 11.0 * 44100 < decodable < 13.0 * 44100  # 40% of a 256 kbps clip
    notes: list[str] = []
    segments = load_segments(path, params, notes=notes)
    assert notes == [
        f"truncated file: the header declares 29.98 s but only {decodable / 44100:.2f} s decode; "
        "used the part that decodes"
    ]
    # Reference: the same decodable samples as a WAV file, which is whole and not truncated.
    samples, rate = sf.read(path, frames=decodable, dtype="float32", always_2d=True)
    wav = tmp_path / "decodable.wav"
    sf.write(wav, samples, rate, subtype="FLOAT")
    reference = load_segments(wav, params)
    assert segments.shape == reference.shape == (10, 128, 64)
    np.testing.assert_allclose(segments, reference, atol=0.05)
    # Under one segment's worth of music: refused, naming both causes.
    with pytest.raises(TruncatedAudioError) as info:
        load_segments(cut_clips["cut3"], params, notes=[])
    assert str(info.value).startswith(f"{cut_clips['cut3']}: truncated file: the header declares 29.98 s")
    assert "too short" in str(info.value)


def test_cache_uses_a_truncated_clip_and_lists_it(cut_clips, real_clip, tmp_path):
    from genrekit.features.cache import FeatureCache, ensure_cache

    params = FeatureParams(n_mels=32, num_segments=4)
    items = [(2, real_clip), (3, cut_clips["cut40"]), (4, cut_clips["cut3"])]
    summary = ensure_cache(tmp_path / "cache", items, params, workers=2, progress=False)
    assert (summary.ok, summary.defective, summary.truncated) == (2, 1, 1)
    assert "1 truncated files used" in str(summary)
    with FeatureCache.open(tmp_path / "cache", params) as cache:
        assert list(cache.status([2, 3, 4])) == ["ok", "ok", "defective"]
        assert [(f.track_id, f.status) for f in cache.truncated] == [(3, "truncated")]
        assert [(f.track_id, f.status) for f in cache.failures] == [(4, "defective")]
        expected = load_segments(cut_clips["cut40"], params, notes=[]).astype(np.float16)
        np.testing.assert_array_equal(cache.read([3])[0], expected)
    rows = list(csv.DictReader(open(next((tmp_path / "cache").glob("part-*")) / "failures.csv")))
    assert [(r["track_id"], r["status"]) for r in rows] == [("3", "truncated"), ("4", "defective")]
    assert "only" in rows[0]["reason"] and "too short" in rows[1]["reason"]


@pytest.fixture(scope="module")
def tiny_model(random_tiny_run) -> tuple[Path, Path]:
    return random_tiny_run


def test_truncated_clip_is_predicted_with_a_warning_in_json_and_csv(tiny_model, cut_clips, tmp_path):
    import balanced_inference

    model, config = tiny_model
    folder = tmp_path / "music"
    folder.mkdir()
    for name, path in cut_clips.items():  # segments of 16 frames at 11,025 Hz: 0.37 s
        (folder / f"{name}.mp3").write_bytes(path.read_bytes())
    out_json, out_csv = tmp_path / "one.json", tmp_path / "all.csv"
    args = ["--model", str(model), "--config", str(config), "--quiet", "--no_progress"]
    assert (
        balanced_inference.main([*args, "--file", str(folder / "cut40.mp3"), "--output", str(out_json)]) == 0
    )
    result = json.loads(out_json.read_text())["results"]["cut40.mp3"]
    seconds = decodable_length(cut_clips["cut40"]) / 44100
    assert result["warnings"][0].startswith(
        f"truncated file: the header declares 29.98 s but only {seconds:.2f} s decode"
    )
    assert result["duration_seconds"] == pytest.approx(seconds, abs=1e-3)
    assert result["num_segments"] == 10
    assert max(s["start_seconds"] for s in result["segment_predictions"]) < seconds
    assert balanced_inference.main([*args, "--folder", str(folder), "--output", str(out_csv)]) == 0
    rows = {r["file"]: r for r in csv.DictReader(io.StringIO(out_csv.read_text()))}
    assert rows["cut40.mp3"]["status"] == "ok" and "truncated file" in rows["cut40.mp3"]["warnings"]
    # 0.85 s decode: 1 + 9372 // 256 = 37 frames hold 2 whole segments of 16, fewer than 10.
    assert rows["cut3.mp3"]["status"] == "ok" and rows["cut3.mp3"]["num_segments"] == "2"
    assert (
        rows["cut3.mp3"]["warnings"].startswith("truncated file")
        and "short file" in rows["cut3.mp3"]["warnings"]
    )
    assert rows["cut1.mp3"]["status"] == "error" and "too short" in rows["cut1.mp3"]["error"]
    assert rows["cut1.mp3"]["error"].startswith("truncated file: the header declares 29.98 s")


# --- 3. every path error is one line -----------------------------------------------------------------


@pytest.fixture
def bad_paths(tmp_path) -> dict[str, Path]:
    """A symlink loop, a folder named like a file, and a music folder holding both."""
    loop = tmp_path / "loop.mp3"
    loop.symlink_to(loop.name)
    (tmp_path / "loopdir").symlink_to("loopdir2")
    (tmp_path / "loopdir2").symlink_to("loopdir")
    folder_file = tmp_path / "x.mp3"
    folder_file.mkdir()
    for name in ("x.json", "x.h5", "x.csv"):
        (tmp_path / name).mkdir()
    music = tmp_path / "music"
    music.mkdir()
    (music / "loop.mp3").symlink_to("loop.mp3")
    (music / "dir.mp3").mkdir()
    return {
        "loop": loop,
        "loopdir": tmp_path / "loopdir",
        "dir": folder_file,
        "music": music,
        "root": tmp_path,
    }


def _one_error_line(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err and lines[-1].startswith("error: "), err
    return lines[-1]


def test_inference_path_errors_are_one_line(tiny_model, bad_paths, capsys):
    import balanced_inference

    model, config = tiny_model
    base = ["--model", str(model), "--quiet", "--no_progress"]
    p = bad_paths
    cases = [
        (["--file", str(p["loop"])], f"{p['loop']}: cannot stat (Too many levels of symbolic links)"),
        (["--file", str(p["dir"])], f"{p['dir']}: not a regular file"),
        (["--folder", str(p["loopdir"])], "is a link that cannot be resolved"),
        (["--folder", str(p["music"]), "--output", str(p["root"] / "x.json")], "is a folder, not a file"),
        (["--file", str(p["dir"]), "--output", str(p["root"] / "loopdir")], "cannot be resolved"),
        (["--model", str(p["loop"]), "--file", "a.mp3"], "model file is a link that cannot be resolved"),
        # A folder given as --model is a run folder: the model it should hold is named.
        (["--model", str(p["root"] / "x.h5"), "--file", "a.mp3"], "x.h5/balanced_hierarchical_genre_model.h5: model file not found"),
        (["--config", str(p["root"] / "x.json"), "--file", "a.mp3"], "config file is a folder, not a file"),
    ]
    for argv, expected in cases:
        if "--model" in argv:  # a repeated --model would make an ensemble: this one replaces the base's
            argv = [*base[2:], *argv]
        else:
            argv = [*base, *argv]
        line = _one_error_line(capsys, balanced_inference.main(argv))
        assert expected in line, (argv, line)
    # The folder run reports the loop as that file's error and goes on (both listing modes).
    for extra in ([], ["--recursive"]):
        out = p["root"] / f"report{len(extra)}.json"
        assert (
            balanced_inference.main([*base, "--folder", str(p["music"]), "--output", str(out), *extra]) == 0
        )
        report = json.loads(out.read_text())
        assert "Too many levels of symbolic links" in report["errors"]["loop.mp3"]
        assert report["results"] == {}


@pytest.mark.parametrize(
    "script, argv, expected",
    [
        ("balanced_trainer", ["--config", "{loop}"], "{loop}: config file not found"),
        ("balanced_trainer", ["--metadata", "{loopdir}", "--extract_only", "--output_dir", "{root}/run"], "cannot be resolved"),
        ("balanced_trainer", ["--output_dir", "{loopdir}", "--extract_only"], "--output_dir {loopdir} is not a folder (a link that cannot be resolved)"),
        ("model_evaluation", ["--model", "{loop}"], "{loop}: model file not found"),
        ("fma_inspector", ["--metadata", "{loopdir}"], "cannot be resolved"),
        ("fma_inspector", ["--metadata", "{dir}"], "{dir}/tracks.csv: tracks.csv not found"),
        ("setup_fma_dataset", ["--subset", "demo", "--data_dir", "{loopdir}"], "Too many levels of symbolic"),
        (
            "quick_start",
            ["--smallest", "--output_dir", "{loopdir}", "--demo_dir", "{root}/demo"],
            "{loopdir}",
        ),
    ],
)
def test_script_path_errors_are_one_line(script, argv, expected, bad_paths, capsys):
    import importlib

    names = {k: str(v) for k, v in bad_paths.items()}
    module = importlib.import_module(script)
    line = _one_error_line(capsys, module.main([a.format(**names) for a in argv]))
    assert expected.format(**names) in line, line


def test_script_main_turns_os_path_errors_into_one_line(capsys):
    from genrekit.cli import script_main

    @script_main
    def fails(argv=None):
        raise argv

    assert fails(IsADirectoryError(21, "Is a directory", "/x/out.json")) == 2
    assert capsys.readouterr().err == "error: /x/out.json: Is a directory\n"
    assert fails(RuntimeError("Symlink loop from '/x/loop'")) == 2
    assert capsys.readouterr().err == "error: /x/loop: symlink loop (cannot be resolved)\n"
    with pytest.raises(RuntimeError, match="a bug"):  # not a path error: the traceback stays
        fails(RuntimeError("a bug"))
    with pytest.raises(OSError):
        fails(OSError("no file named"))


# --- 4. native decoder messages -------------------------------------------------------------------


def test_decoder_messages_are_quiet_in_every_mode_and_shown_with_verbose(
    tiny_model, cut_clips, tmp_path, capfd
):
    """libmpg123 writes on file descriptor 2 ("Xing stream size off ...") from C: captured at fd level."""
    import balanced_inference

    model, _ = tiny_model
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("cut40", "cut3"):
        (folder / f"{name}.mp3").write_bytes(cut_clips[name].read_bytes())
    base = ["--model", str(model), "--quiet", "--no_progress", "--workers", "2"]
    runs = {
        "file": ["--file", str(folder / "cut40.mp3")],
        "folder": ["--folder", str(folder), "--output", str(tmp_path / "r.json")],
    }
    for mode, argv in runs.items():
        capfd.readouterr()
        assert balanced_inference.main([*base, *argv]) == 0
        quiet = capfd.readouterr().err
        assert "Xing" not in quiet and "mpg123" not in quiet.lower(), (mode, quiet)
        assert "file(s) done" in quiet  # the toolkit's own lines still show
        (tmp_path / "r.json").unlink(missing_ok=True)
        assert balanced_inference.main([*base, *argv, "--verbose"]) == 0
        loud = capfd.readouterr().err
        assert "Xing stream size off" in loud, (mode, loud)
        (tmp_path / "r.json").unlink(missing_ok=True)


# --- 5. quick start: one summary line, missing files remembered, labeled subset counts -------------


def test_subset_counts_are_inclusive_and_exact_labeled(tmp_path):
    from tests.fma_fixtures import small_dataset

    tracks = fma.load_tracks(small_dataset(tmp_path / "meta"))
    counts = fma.subset_split_counts(tracks)
    # By hand from fma_fixtures.small_dataset: small 2, 3 | 20 | 30; medium 5 | 21 |;
    # large 10, 11, 12, 33 | | 31, 32 (training | validation | test).
    assert counts["exact_value"] == {
        "small": {"training": 2, "validation": 1, "test": 1},
        "medium": {"training": 1, "validation": 1, "test": 0},
        "large": {"training": 4, "validation": 0, "test": 2},
    }
    assert counts["inclusive"] == {
        "small": {"training": 2, "validation": 1, "test": 1},
        "medium": {"training": 3, "validation": 2, "test": 1},
        "large": {"training": 7, "validation": 2, "test": 3},
    }
    for subset, by_split in counts["inclusive"].items():  # what the loader selects
        assert sum(by_split.values()) == len(fma.select_subset(tracks, subset))
    small_only = fma.subset_split_counts(fma.select_subset(tracks, "small"))
    assert list(small_only["inclusive"]) == ["small"]


def test_inspection_report_labels_its_subset_counts(tmp_path):
    import fma_inspector
    from tests.fma_fixtures import small_dataset

    meta = small_dataset(tmp_path / "meta")
    out = tmp_path / "report"
    argv = ["--metadata", str(meta), "--audio", str(tmp_path), "--output_dir", str(out), "--no_audio_probe"]
    assert fma_inspector.main(argv) == 0
    report = json.loads((out / "inspection_report.json").read_text())
    assert report["tracks_per_subset_and_split"]["inclusive"]["medium"] == {
        "training": 3,
        "validation": 2,
        "test": 1,
    }
    assert report["tracks_per_subset_and_split"]["exact_value"]["medium"]["training"] == 1


@pytest.mark.slow
def test_quick_start_features_prints_once_and_remembers_missing_files(smallest_demo, tmp_path, capsys):
    import quick_start
    from genrekit.datasets.demo.writer import DemoInfo
    from tests.conftest import copy_demo

    demo_dir = copy_demo(smallest_demo, tmp_path / "demo")  # the demo --smallest writes, written once
    args = ["--smallest", "--demo_dir", str(demo_dir), "--output_dir", str(tmp_path / "run")]
    args += ["--cache_dir", str(tmp_path / "features"), "--steps", "setup,features"]

    def run() -> str:
        assert quick_start.main(args) == 0
        captured = capsys.readouterr()
        return captured.out + captured.err

    first = run()
    summaries = [line for line in first.splitlines() if "tracks ready" in line]
    assert len(summaries) == 1, summaries
    assert "1 missing" in summaries[0] and "extracting features of 60 tracks" in first
    second = run()  # nothing changed: nothing to extract, the missing file is not tried again
    assert "extracting features" not in second
    assert len([line for line in second.splitlines() if "tracks ready" in line]) == 1
    assert "(60 cached" not in second and "1 missing" in second
    # The missing file appears: the next run picks it up, and only it.
    info = DemoInfo.from_json(json.loads((demo_dir / "demo_dataset.json").read_text())["info"], demo_dir)
    (missing,) = info.missing_ids
    ok_clip = next(p for p in sorted(info.audio_dir.rglob("*.mp3")) if int(p.stem) not in info.defective_ids)
    target = fma.audio_path(info.audio_dir, missing)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ok_clip.read_bytes())
    third = run()
    assert "extracting features of 1 tracks" in third
    assert "0 missing" in third


# --- 6. who writes in a multi-worker run (the two-process runs are in test_scale_out.py) ----------


@pytest.mark.parametrize(
    "tf_config, role",
    [
        (None, ("chief", 0, True)),
        (
            {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}},
            ("worker", 0, True),
        ),
        (
            {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}},
            ("worker", 1, False),
        ),
        (
            {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
            ("worker", 0, False),
        ),
        (
            {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
            ("chief", 0, True),
        ),
    ],
)
def test_worker_role_and_where_it_writes(tf_config, role, monkeypatch, tmp_path):
    from genrekit.device import release_worker_output_dir, worker_output_dir, worker_role

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert worker_role() == role
    out = tmp_path / "run"
    written = worker_output_dir(out)
    if role[2]:
        assert written == out
    else:
        assert (
            written != out and written.is_dir() and written.name.startswith(f"genrekit-{role[0]}{role[1]}-")
        )
        release_worker_output_dir(out, written)
        assert not written.exists()
    assert not out.exists()  # deciding writes nothing


def test_bad_tf_config_is_a_config_error(monkeypatch):
    from genrekit.device import worker_role
    from genrekit.errors import ConfigError

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ConfigError, match="TF_CONFIG must name the cluster"):
        worker_role()


# --- 7. file names that are not UTF-8 (a Latin-1 disk: b"caf\xe9.mp3") -----------------------------


def _latin1(folder: Path, name: bytes) -> Path:
    """``folder / name`` as Python names a file whose name is not UTF-8 (:func:`os.fsdecode`)."""
    path = folder / os.fsdecode(name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path.touch()
        path.unlink()
    except (OSError, UnicodeEncodeError):
        pytest.skip(f"this file system refuses the name {name!r}")
    return path


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav", "ogg"])
def test_non_utf8_file_name_decodes_as_any_other(fmt, real_clip, tmp_path):
    from genrekit.features.audio_files import decode_file, list_audio_files
    from tests.features_helpers import write_clip

    source = real_clip if fmt == "mp3" else write_clip(tmp_path / f"plain.{fmt}", seconds=6.0, sr=22050)
    path = _latin1(tmp_path / "music", b"caf\xe9." + fmt.encode())
    path.write_bytes(source.read_bytes())
    assert list_audio_files(path.parent)[0] == [path]
    params = FeatureParams(duration=6.0)
    result = decode_file("k", path, params)
    assert result.error is None, result.error
    assert os.fsencode(result.path) == os.fsencode(tmp_path / "music") + b"/caf\xe9." + fmt.encode()
    assert result.info["duration_seconds"] == pytest.approx(sf.info(source).duration, abs=0.06)
    np.testing.assert_array_equal(result.segments, decode_file("k", source, params).segments)


def _write_audio(path: Path, audio: np.ndarray) -> None:
    """own_fixtures.write_audio under any name (soundfile's writer takes only UTF-8 names)."""
    from tests import own_fixtures as fx

    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / f"plain{path.suffix}"
        fx.write_audio(plain, audio)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(plain, path)


def _latin1_collection(base: Path) -> dict:
    """Genre folders whose root, one genre and some files have names that are not UTF-8, and a
    defective file with such a name."""
    from tests import own_fixtures as fx

    root = _latin1(base, b"m\xfcsic")
    layout = {
        b"blues": [b"caf\xe9.wav", b"t1.flac", b"t2.wav", b"t3.ogg"],
        b"g\xe9nre": [b"t0.wav", b"na\xefve.mp3", b"t2.au", b"t3.wav"],
        b"rock": [b"t0.wav", b"t1.wav", b"t2.flac", b"t3.wav"],
    }
    for g, (genre, names) in enumerate(layout.items()):
        for i, name in enumerate(names):
            _write_audio(root / os.fsdecode(genre) / os.fsdecode(name), fx.clip(i, g * 3))
    broken = root / "blues" / os.fsdecode(b"br\xfbl\xe9.mp3")
    broken.write_text("not audio\n")
    return {"root": root, "cafe": root / "blues" / os.fsdecode(b"caf\xe9.wav"), "broken": broken}


def test_own_collection_with_non_utf8_names_is_inspected_cached_and_trained(tmp_path, capsys):
    import hashlib

    import balanced_trainer
    import fma_inspector
    import model_evaluation
    from genrekit.datasets import own
    from tests import own_fixtures as fx

    music = _latin1_collection(tmp_path)
    root, spec = music["root"], f"folder:{music['root']}"
    ds = own.FolderDataset(root)
    labelled = ds.load()
    assert len(labelled.targets) == 13
    # Ids hash the exact bytes of the relative path: the same id on every platform.
    tid = int.from_bytes(hashlib.sha1(b"blues/caf\xe9.wav").digest()[:8], "big") % 2**48
    assert os.fsencode(ds.audio_path(tid)) == os.fsencode(music["cafe"])
    titles = sorted(labelled.tree.title[g] for g in labelled.tree.roots)
    assert titles == ["blues", os.fsdecode(b"g\xe9nre"), "rock"]

    code = fma_inspector.main(["--dataset", spec, "--no_plots", "--output_dir", str(tmp_path / "inspect")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "(subset large: 13 tracks)" in printed
    assert "audio: 12 present, 0 missing, 0 empty, 1 unreadable" in printed
    assert "m\\udcfcsic" in printed  # the root's name, escaped on the console rather than a crash

    run = tmp_path / "run"
    settings = fx.tiny_settings_file(tmp_path)
    argv = ["--dataset", spec, "--config", str(settings), "--output_dir", str(run)]
    assert balanced_trainer.main(argv) == 0
    config = json.loads((run / "balanced_training_config.json").read_text())
    assert [os.fsencode(f["path"]) for f in config["left_out_files"]] == [os.fsencode(music["broken"])]
    # The run's split file and the cache's failure list keep the names' exact bytes.
    raw = (run / own.SPLITS_FILE).read_bytes()
    assert b"/m\xfcsic/blues/caf\xe9.wav," in raw and b"/g\xe9nre/na\xefve.mp3," in raw
    saved = own.read_splits_table(run / own.SPLITS_FILE)
    expected = sorted(os.fsencode(ds.audio_path(t)) for t in saved["track_id"])
    assert sorted(os.fsencode(p) for p in saved["path"]) == expected
    failures = list(Path(config["data"]["cache_dir"]).glob("part-*/failures.csv"))
    assert len(failures) == 1 and b"/blues/br\xfbl\xe9.mp3,defective," in failures[0].read_bytes()
    assert "m\\udcfcsic" in (run / "run.log").read_text(encoding="utf-8")  # logged escaped
    # Evaluation: its Markdown report names the genre and the folder by their bytes.
    model = run / "balanced_hierarchical_genre_model.h5"
    assert model_evaluation.main(["--model", str(model), "--no_plots"]) == 0
    markdown = (run / "evaluation" / "evaluation_report.md").read_bytes()
    assert b"g\xe9nre" in markdown and b"/m\xfcsic`" in markdown


def test_manifest_paths_keep_their_bytes_and_labels_must_be_utf8(tmp_path):
    from genrekit.datasets.own import ManifestDataset
    from tests import own_fixtures as fx

    for i in range(3):
        for genre in ("a", "b"):
            fx.write_audio(tmp_path / genre / f"t{i}.wav", fx.clip(i, 1)[:500])
    cafe = _latin1(tmp_path / "a", b"caf\xe9.wav")
    _write_audio(cafe, fx.clip(9, 1)[:500])
    manifest = tmp_path / "m.csv"
    lines = [b"path,genres"] + [f"{g}/t{i}.wav,{g.upper()}".encode() for i in range(3) for g in "ab"]
    manifest.write_bytes(b"\n".join([*lines, b"a/caf\xe9.wav,A"]) + b"\n")
    ds = ManifestDataset(manifest)
    assert len(ds.load().targets) == 7
    assert os.fsencode(cafe) in {os.fsencode(p) for p in ds.splits_table()["path"]}
    # A label is text: a genre in another encoding is refused in one line, naming the row.
    manifest.write_bytes(b"\n".join([*lines, b"a/caf\xe9.wav,Caf\xe9"]) + b"\n")
    refused = r"m\.csv line 8: genres 'Caf\\xe9' is not UTF-8 text; save the manifest as UTF-8"
    with pytest.raises(DatasetError, match=refused):
        ManifestDataset(manifest).load()


def test_text_files_we_write_keep_a_name_s_bytes(tmp_path):
    """The one text writer (reports, CSVs) writes a name that is not UTF-8 as its bytes."""
    from genrekit.fileio import write_text_atomic

    name = os.fsdecode(b"caf\xe9.mp3")
    path = write_text_atomic(tmp_path / "report.md", f"| {name} | ok |\n")
    assert path.read_bytes() == b"| caf\xe9.mp3 | ok |\n"
