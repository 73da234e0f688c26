"""The balancing study's issue-26 rows: the transfer baseline and the heads variants (no training)."""

from __future__ import annotations

from tests.test_bench_balancing import load_bench


def test_heads_variants_and_the_transfer_baseline_share_one_cache(tmp_path):
    """Row 14's heads train on the very cache rows 13a-b read (one extraction); row 9 keeps its own."""
    from genrekit.evaluate.transfer_baseline import transfer_frontend
    from genrekit.features.frontends import from_settings
    from genrekit.settings import Settings

    bench = load_bench()
    rows = {r.key: r for r in bench.ROWS}
    assert {"13a", "13b", "14"} <= set(rows) and set(bench.HEADS_VARIANTS) <= set(rows)
    args = bench.resolve_args(["--work_dir", str(tmp_path)])
    overrides = bench.base_overrides(args, str(tmp_path / "m"), str(tmp_path / "a"), tmp_path / "f")
    fold = bench.Fold(0, str(tmp_path / "m"), {})
    s9, s14 = (bench.nn_settings(rows[k], overrides, fold) for k in ("9", "14"))
    baseline = transfer_frontend(Settings.build(None, {**overrides, **bench.musicnn_overrides(overrides)}))
    assert from_settings(s14).cache_name() == baseline.cache_name() == "musicnn_MSD_musicnn_max_pool_1p_v1"
    assert from_settings(s9).cache_name() == "musicnn_MSD_musicnn_penultimate_1p_v1"
    for key, changes in bench.HEADS_VARIANTS.items():
        settings = bench.nn_settings(rows[key], overrides, fold)
        assert all(getattr(settings, k) == v for k, v in changes.items()), key
        assert settings.learning_rate == s9.learning_rate == 1e-3  # otherwise row 9's recipe


def test_transfer_tables_and_markdown():
    """Every row against row 13b, the heads variants against row 9; both as Markdown sections."""
    bench = load_bench()
    fig = {"mean": 0.1, "pooled": 0.1, "low": 0.02, "high": 0.2}
    figs = {m: fig for m, _ in bench.COLUMNS}
    rows = {r.key: r for r in bench.ROWS}
    summary = {
        "9": {"difference_to": {"13b": figs}},
        "13b": {"difference_to": {"9": figs}},
        "14": {"difference_to": {"13b": figs, "9": figs}},
    }
    results = {k: {"row": rows[k]} for k in summary}
    table = bench.transfer_lines(summary, results, small=[1], names=["Rock", "Jazz"])
    titles = [i for i, line in enumerate(table) if line.startswith("\npaired difference")]
    assert [table[i].split(",")[0] for i in titles] == [
        "\npaired difference to row 13b",
        "\npaired difference to row 9",
    ]
    assert table[titles[0] + 1].endswith("| recall Jazz |")
    first, second = table[titles[0] + 3 : titles[1]], table[titles[1] + 3 :]
    assert [line.split(" |")[0] for line in first] == ["| 9", "| 14"]  # row 13b is not its own difference
    assert [line.split(" |")[0] for line in second] == ["| 14"]  # only the variants against row 9
    assert "+0.100 [+0.02, +0.20] *" in second[0]
    assert bench.transfer_lines({"1": {"difference_to": {}}}, {"1": {"row": rows["1"]}}, [], []) == []
    lines = ["## Setup", "- Row 10: fine-tuning.", "", "## Per-genre recall (rows 1, 5)", "x"]
    out = bench.with_transfer_markdown(lines, table)
    assert out[2].startswith("- Rows 13a-b") and out[3].startswith("- Rows 14 and on")
    heads = [line for line in out if line.startswith("## ")]
    assert heads == [
        "## Setup",
        "## Paired differences to row 13b (the transfer baseline)",
        "## Paired differences to row 9 (the heads recipe the variants change)",
        "## Per-genre recall (rows 1, 5)",
    ]
