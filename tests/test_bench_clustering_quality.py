"""The clustering-quality bench keeps what it measured per model: a partial run (``--only``, ``--model``)
rewrites only its own parts, and the section always shows the default model's parts."""

import json
from pathlib import Path

from bench.clustering_quality import (
    PARTS,
    RESULTS_VERSION,
    Grid,
    load_results,
    save_results,
    section_lines,
)


def _part(name: str, f1: float) -> dict[str, object]:
    return {"lines": [f"### {name} measured", ""], "summary": {"neus_test": f1} if name == "neus" else {}}


def test_results_round_trip_per_model_and_old_layout_is_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "clustering_quality.json"
    assert load_results(path) == {}
    path.write_text(json.dumps({"neus": {"lines": ["old"], "threshold": 0.7}}))  # round 1: one unnamed model
    assert load_results(path) == {}
    models = {"use-multilingual-v3": {"neus": _part("neus", 0.8)}, "all-MiniLM-L6-v2": {"neus": _part("neus", 0.7)}}
    save_results(path, models)
    assert json.loads(path.read_text())["version"] == RESULTS_VERSION
    assert load_results(path) == models


def test_section_shows_every_part_of_the_default_model_and_compares_the_others() -> None:
    models = {
        "use-multilingual-v3": {"neus": _part("neus", 0.84), "semeval": _part("semeval", 0.0)},
        "all-MiniLM-L6-v2": {part: _part(part, 0.80) for part in PARTS},
    }
    text = "\n".join(section_lines(models, "use-multilingual-v3"))
    assert "### neus measured" in text and "### semeval measured" in text
    assert "### roundups\n\n(not measured yet)" in text  # a part never run is named, not taken from MiniLM
    assert text.count("### roundups measured") == 0
    row = next(line for line in text.splitlines() if line.startswith("| NeuS test B³ F1, NeuS-calibrated"))
    assert row.endswith("| 0.840 | 0.800 |")


def test_grids_follow_the_model_kind() -> None:
    centred, raw = Grid.for_model(multilingual=True), Grid.for_model(multilingual=False)
    assert centred.centred and min(centred.thresholds) < 0.3 and centred.warmups
    assert not raw.centred and min(raw.thresholds) >= 0.35 and not raw.warmups
