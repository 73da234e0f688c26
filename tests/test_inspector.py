"""fma_inspector.py: full analysis, --generate_config, --check_paths, --analyze_balance."""

import json

import numpy as np
import pytest

import fma_inspector
from genrekit.settings import Settings
from tests.fma_fixtures import small_dataset


@pytest.fixture
def meta(tmp_path):
    return small_dataset(tmp_path / "fma_metadata")


def _audio(tmp_path, track_ids, bad=()):
    audio = tmp_path / "audio"
    for tid in track_ids:
        p = audio / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"" if tid in bad else b"ID3\x04" + bytes(100))
    return audio


def test_full_analysis_writes_report_and_plots(tmp_path, meta, capsys):
    audio = _audio(tmp_path, [2, 3, 5, 10, 11, 12, 20, 21, 30, 31], bad={31})  # 32, 33 missing
    out = tmp_path / "report"
    assert fma_inspector.main(["--metadata", str(meta), "--audio", str(audio), "--output_dir", str(out)]) == 0
    report = json.loads((out / "inspection_report.json").read_text())
    assert report["n_tracks"] == 12
    assert report["tracks_per_split"] == {"training": 7, "validation": 2, "test": 3}
    assert report["audio"]["ok"] == 9 and report["audio"]["missing"] == 2 and report["audio"]["empty"] == 1
    assert report["audio"]["examples"]["missing"] == [32, 33]
    assert report["levels"]["top"]["n_classes"] == 4
    assert report["levels"]["top"]["imbalance_ratio"] == 3.0  # Rock 3 training tracks vs 1 of the others
    assert report["genre_top_coverage"] == pytest.approx(11 / 12)
    for level in ("top", "medium", "all"):
        png = out / f"distribution_{level}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "9 present, 2 missing, 1 empty" in text


def test_generate_config_is_usable_with_config(tmp_path, meta):
    path = tmp_path / "balancing.json"
    assert (
        fma_inspector.main(
            ["--metadata", str(meta), "--generate_config", str(path), "--oversample_threshold", "3"]
        )
        == 0
    )
    data = json.loads(path.read_text())
    assert data["_class_weights"]["top"]["Rock"]["weight"] == pytest.approx(
        6 / (4 * 3)
    )  # 6 labelled training tracks, 4 classes, Rock 3
    assert data["_oversampled"] == ["International", "Electronic", "Hip-Hop"]
    settings = Settings.build(path)
    assert settings.oversample_threshold == 3
    assert settings.metadata_dir == str(meta)


def test_analyze_balance_prints_every_level(meta, capsys):
    assert fma_inspector.main(["--metadata", str(meta), "--analyze_balance"]) == 0
    out = capsys.readouterr().out
    for level in ("top level: 4 classes", "medium level", "all level"):
        assert level in out
    assert "oversample" in out and "Rock" in out


def test_check_paths_names_the_fix(tmp_path, meta, capsys):
    code = fma_inspector.main(["--check_paths", "--metadata", str(meta), "--audio", str(tmp_path / "nope")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"[BAD] audio folder: {tmp_path / 'nope'}" in out
    assert "python setup_fma_dataset.py --subset fma_large --symlinks" in out
    assert "[ok ] tracks.csv" in out


def test_missing_metadata_is_one_line_with_the_setup_command(tmp_path, capsys):
    assert fma_inspector.main(["--metadata", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "does not exist; create it with: python setup_fma_dataset.py --subset metadata" in err[0]


def test_analyze_balance_shows_the_trainers_relative_thresholds(tmp_path, capsys):
    """Relative mode: the inspector prints and plots the thresholds the trainer's sampler uses."""
    import re

    from genrekit.datasets.analysis import level_table, load_dataset, plot_distributions, sampling_thresholds
    from genrekit.datasets.demo.metadata import plan_demo, write_genres_csv, write_tracks_csv
    from genrekit.train.run import BalancedGenreProcessor

    meta = tmp_path / "fma_metadata"
    plan = plan_demo(1800, 0)
    write_tracks_csv(plan.tracks, meta / "tracks.csv")
    write_genres_csv(plan.genres, meta / "genres.csv")
    assert (
        fma_inspector.main(
            ["--metadata", str(meta), "--analyze_balance", "--sampling_thresholds", "relative"]
        )
        == 0
    )
    out = capsys.readouterr().out
    shown = re.search(r"under (\d+) training tracks are oversampled, over (\d+) undersampled", out)
    assert shown and "relative: 100 / 5000 for fma_large" in out

    settings = Settings.build(None, {"sampling_thresholds": "relative", "metadata_dir": str(meta)})
    processor = BalancedGenreProcessor(settings, str(meta), str(tmp_path / "audio"))
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    # As train() does: the tracks whose audio decodes (not the demo's defective files), sized by the
    # metadata's labelled training tracks.
    defective = [t for ids in plan.defects.values() for t in ids]
    usable = np.setdiff1d(plan.tracks.index.to_numpy(), defective)
    train = processed.labels("training", usable)
    n = processed.n_labelled_training
    assert int((train.top >= 0).sum()) < n  # defective files among the labelled training tracks
    sampler = processor.make_sampler(train, processed.num_classes["top"], n)
    want = (round(100 * n / 39257), round(5000 * n / 39257))  # by hand: neither is at .5
    assert (sampler.oversample_threshold, sampler.undersample_threshold) == want
    assert tuple(map(int, shown.groups())) == want
    assert want[1] < 5000 and want[0] < 100  # really scaled

    ds = load_dataset(settings, meta, tmp_path / "audio")
    assert sampling_thresholds(ds, settings)["labelled_training_tracks"] == n
    table = level_table(ds, "top", settings)
    planned = dict(zip(processed.vocabs["top"].names, sampler.planned_counts(), strict=True))
    for row in table.itertuples():  # the table's actions are the sampler's plan
        want_count = planned[row.genre]
        if want_count == row.train_tracks:
            assert row.sampling == "keep", row
        else:
            assert row.sampling == ("oversample" if want_count > row.train_tracks else "undersample"), row
    (png,) = [
        p for p in plot_distributions(ds, settings, tmp_path / "plots") if p.name == "distribution_top.png"
    ]
    assert png.stat().st_size > 0
