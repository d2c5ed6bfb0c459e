"""`latentmix reproduce fashion-mnist --peers` (issue 27, item 3): the preset, the paired
differences against LR-M-DYR-H and the "beats every latentmix method beyond the seed spread" marker,
checked against numbers worked out by hand on fabricated results; the command on tiny IDX files."""

import csv
import json

import pytest

from latentmix.cli import build_parser, main
from latentmix.experiments.fashion import table_grid
from latentmix.experiments.peers import (
    MARK, PEER_METHODS, PEER_TABLE, cell_leaders, cell_leaders_markdown, latentmix_rows, recorded_layers,
    paired_markdown, paired_rows,
)
from latentmix.experiments.reproduce import default_out
from latentmix.summary_tables import beats_beyond_spread, seed_differences

from test_fashion import _write_fashion_like


def _args(*flags):
    return build_parser().parse_args(["reproduce", "fashion-mnist", *flags])


# --------------------------------------------------------------------------------------------
# the preset


def test_peer_preset_makes_the_issues_cells_methods_and_seeds():
    args = _args("--peers", "--model", "mlp")
    grid = table_grid(args, PEER_TABLE, "/data")
    methods = [m.method for m in grid.methods]
    assert methods == list(PEER_METHODS)
    # the issue's rows: CE, the paper's two, the five peers, and ELR, Co-teaching and DivideMix with latent mixing
    assert {"ce", "m-dyr-h", "lr-m-dyr-h", "gce", "sce", "elr", "lr-m-elr", "coteaching", "lr-m-coteaching",
            "dividemix", "lr-dividemix"} == set(methods)
    runs = grid.runs()
    cells = sorted({(r.noise_kind, r.noise) for r in runs})
    assert cells == [("asymmetric", 0.2), ("asymmetric", 0.4), ("symmetric", 0.2), ("symmetric", 0.5),
                     ("symmetric", 0.8)]  # no 0% column
    assert sorted({r.seed for r in runs}) == [0, 1, 2]
    assert len(runs) == len(PEER_METHODS) * 5 * 3
    assert grid.base.model == "mlp" and grid.name == "fashion-mnist-peers-mlp"
    assert all(r.val_split == 0.1 for r in runs)  # the "selected" column's noisy holdout
    assert default_out(args) == "runs/reproduce-fashion-mnist-peers-mlp"
    assert default_out(_args("--peers")) == "runs/reproduce-fashion-mnist-peers"
    assert default_out(_args("--model", "mlp")) == "runs/reproduce-fashion-mnist-mlp"  # Table 1's, as before


def test_peer_preset_overrides_and_the_small_cnn():
    grid = table_grid(_args("--peers", "--methods", "ce,elr", "--noise", "0.5", "--seeds", "2"), PEER_TABLE, "/d")
    assert [m.method for m in grid.methods] == ["ce", "elr"]
    assert sorted({(r.noise_kind, r.noise, r.seed) for r in grid.runs()}) == [
        ("symmetric", 0.5, 0), ("symmetric", 0.5, 1)]  # --noise alone: no class-dependent columns
    cnn = table_grid(_args("--peers"), PEER_TABLE, "/d")
    assert cnn.base.model is None and cnn.base.channels_last and cnn.name == "fashion-mnist-peers"


def test_peers_is_refused_for_another_target(capsys):
    assert main(["reproduce", "spiral", "--peers", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--peers" in err and "fashion-mnist" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# the paired differences, by hand


def _run(row, seed, selected, noise=0.5, kind="symmetric", correction="none"):
    return {"row": row, "method": row, "seed": seed, "noise": noise, "noise_kind": kind,
            "selected_val_acc": selected, "correction": correction}


def _fabricated():
    """Selected accuracy per seed 0, 1, 2 at 50% symmetric noise; LR-M-DYR-H and M-DYR-H correct."""
    runs = []
    for row, values, correction in (
            ("lr-m-dyr-h", (0.80, 0.81, 0.79), "hard"),
            ("m-dyr-h", (0.78, 0.80, 0.805), "hard"),
            ("gce", (0.82, 0.815, 0.80), "none"),   # beats LR-M-DYR-H on every seed, M-DYR-H not on seed 2
            ("elr", (0.83, 0.83, 0.82), "none"),    # beats both on every seed
            ("ce", (0.70, 0.75, None), "none")):    # seed 2 missing: paired on seeds 0 and 1 only
        runs += [_run(row, seed, value, correction=correction) for seed, value in enumerate(values)]
    # a class-dependent column where ELR loses: must not be mixed into the symmetric one
    runs += [_run("lr-m-dyr-h", s, 0.85, kind="asymmetric", correction="hard") for s in range(3)]
    runs += [_run("m-dyr-h", s, 0.84, kind="asymmetric", correction="hard") for s in range(3)]
    runs += [_run("elr", s, 0.84, kind="asymmetric") for s in range(3)]
    return runs


ROWS = ["ce", "m-dyr-h", "lr-m-dyr-h", "gce", "elr"]
COLUMNS = [0.5, ("asymmetric", 0.5)]


def test_seed_differences_by_hand():
    differences = seed_differences(_fabricated(), "gce", "lr-m-dyr-h", "selected_val_acc")
    assert list(differences) == [0.5]  # GCE has no class-dependent runs to pair
    assert differences[0.5] == pytest.approx({0: 2.0, 1: 0.5, 2: 1.0})
    ce = seed_differences(_fabricated(), "ce", "lr-m-dyr-h", "selected_val_acc")
    assert ce[0.5] == pytest.approx({0: -10.0, 1: -6.0})  # seed 2 has no CE value
    elr = seed_differences(_fabricated(), "elr", "lr-m-dyr-h", "selected_val_acc")
    assert elr[("asymmetric", 0.5)] == pytest.approx({0: -1.0, 1: -1.0, 2: -1.0})
    # runs.csv rows: strings, "" for a missing value
    as_csv = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in _fabricated()]
    assert seed_differences(as_csv, "ce", "lr-m-dyr-h", "selected_val_acc")[0.5] == pytest.approx({0: -10.0, 1: -6.0})


def test_paired_rows_mean_min_max_and_the_marker_by_hand():
    results = _fabricated()
    assert latentmix_rows(results, ROWS) == ["m-dyr-h", "lr-m-dyr-h"]
    lines = {(line["row"], line["noise_kind"]): line for line in paired_rows(results, ROWS, COLUMNS)}
    assert ("lr-m-dyr-h", "symmetric") not in lines  # the reference has no row of its own
    gce = lines[("gce", "symmetric")]
    assert (gce["n"], gce["mean"], gce["min"], gce["max"]) == (3, pytest.approx(3.5 / 3), pytest.approx(0.5),
                                                               pytest.approx(2.0))
    assert gce["per_seed"] == "0:+2.00 1:+0.50 2:+1.00"
    # GCE minus M-DYR-H per seed: +4.0, +1.5, -0.5: not on every seed, so no marker
    assert gce["beats_every_latentmix_method"] is False
    elr = lines[("elr", "symmetric")]
    assert (elr["mean"], elr["min"], elr["max"]) == (pytest.approx(8 / 3), pytest.approx(2.0), pytest.approx(3.0))
    # ELR minus LR-M-DYR-H: +3, +2, +3; minus M-DYR-H: +5, +3, +1.5: above zero on every seed
    assert elr["beats_every_latentmix_method"] is True
    assert lines[("elr", "asymmetric")]["beats_every_latentmix_method"] is False  # -1 on every seed
    m = lines[("m-dyr-h", "symmetric")]
    # M-DYR-H minus LR-M-DYR-H: -2.0, -1.0, +1.5
    assert (m["mean"], m["min"], m["max"]) == (pytest.approx(-0.5), pytest.approx(-2.0), pytest.approx(1.5))
    assert m["beats_every_latentmix_method"] is False  # a latentmix method is never marked
    ce = lines[("ce", "symmetric")]
    assert (ce["n"], ce["mean"]) == (2, pytest.approx(-8.0))


def test_the_layer_record_is_read_back():
    assert recorded_layers("0-2") == (0, 1, 2) and recorded_layers("1-2") == (1, 2) and recorded_layers("2") == (2,)
    assert recorded_layers("0,2") == (0, 2) and recorded_layers("0-0") == (0,)
    assert recorded_layers("none") == () and recorded_layers("") == () and recorded_layers(None) == ()


def _with_compositions():
    """_fabricated plus LR-M-ELR (latent mixup, no correction: one of ours) and DivideMix (input
    MixMatch: a peer), 50% symmetric only."""
    runs = _fabricated()
    runs += [dict(_run("lr-m-elr", s, v), mix_layers="0-2") for s, v in enumerate((0.835, 0.825, 0.825))]
    runs += [dict(_run("dividemix", s, v), mix_layers="0-0") for s, v in enumerate((0.84, 0.84, 0.83))]
    return runs


def test_a_latent_mixup_composition_is_ours_and_removes_the_marker():
    results = _with_compositions()
    rows = ROWS + ["lr-m-elr", "dividemix"]
    assert latentmix_rows(results, rows) == ["m-dyr-h", "lr-m-dyr-h", "lr-m-elr"]
    lines = {(line["row"], line["noise_kind"]): line for line in paired_rows(results, rows, COLUMNS)}
    # ELR minus LR-M-ELR per seed: -0.5, +0.5, -0.5: no longer above every latentmix method on every seed
    assert lines[("elr", "symmetric")]["beats_every_latentmix_method"] is False
    # DivideMix minus LR-M-ELR: +0.5, +1.5, +0.5; minus LR-M-DYR-H: +4, +3, +4; minus M-DYR-H: +6, +4, +2.5
    assert lines[("dividemix", "symmetric")]["beats_every_latentmix_method"] is True


def test_cell_leaders_by_hand():
    results = _with_compositions()
    rows = ROWS + ["lr-m-elr", "dividemix"]
    leaders = {line["column"]: line for line in cell_leaders(results, rows, COLUMNS)}
    sym = leaders[0.5]
    # ours: LR-M-ELR 82.83 > LR-M-DYR-H 80.0 > M-DYR-H 79.5; others: DivideMix 83.67 > ELR 82.67 > GCE
    assert (sym["latentmix_row"], sym["other_row"]) == ("lr-m-elr", "dividemix")
    assert sym["latentmix_mean"] == pytest.approx(248.5 / 3) and sym["other_mean"] == pytest.approx(251 / 3)
    assert sym["gap"] == pytest.approx(-2.5 / 3) and sym["other_beats_every_latentmix_method"] is True
    asym = leaders[("asymmetric", 0.5)]
    # ours: LR-M-DYR-H 85 over M-DYR-H 84; the only other row there: ELR 84
    assert (asym["latentmix_row"], asym["other_row"], asym["gap"]) == ("lr-m-dyr-h", "elr", pytest.approx(1.0))
    assert asym["other_beats_every_latentmix_method"] is False
    text = cell_leaders_markdown(list(leaders.values()))
    assert f"| 50% | LR-M-ELR (0-2) 82.8 | DivideMix 83.7 | -0.8 {MARK} |" in text
    assert "| asym. 50% | LR-M-DYR-H (0-2) 85.0 | ELR 84.0 | +1.0 |" in text


def test_paired_markdown_cells_and_marker():
    results = _fabricated()
    text = paired_markdown(paired_rows(results, ROWS, COLUMNS), ROWS, COLUMNS, latentmix_rows(results, ROWS))
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "| method | 50% | asym. 50% |" in text
    assert "LR-M-DYR-H (0-2)" not in lines
    assert lines["ELR"] == f"| ELR | +2.7 [+2.0, +3.0] {MARK} | -1.0 [-1.0, -1.0] |"
    assert lines["GCE"] == "| GCE | +1.2 [+0.5, +2.0] | – |"
    assert lines["CE"] == "| CE | -8.0 [-10.0, -6.0] | – |"
    assert MARK not in lines["M-DYR-H"]


@pytest.mark.parametrize("differences, beats", [
    ([[0.1, 0.2, 0.3], [0.5, 1.0, 0.01]], True),   # above zero on every seed against both
    ([[0.1, 0.2, 0.3], [0.5, 1.0, -0.01]], False),  # one seed lost against one of them
    ([[2.0, 3.0, 0.0]], False),                     # a tie on one seed is not a win
    ([[5.0]], False),                               # one seed has no spread
    ([], False),                                    # nothing to beat
])
def test_beats_beyond_spread(differences, beats):
    assert beats_beyond_spread(differences) is beats


# --------------------------------------------------------------------------------------------
# the command


def test_reproduce_fashion_peers_cli(tmp_path):
    idx = _write_fashion_like(tmp_path / "fashion")
    out = tmp_path / "out"
    command = ["reproduce", "fashion-mnist", "--peers", "--model", "mlp", "--data-dir", str(idx), "--epochs", "1",
               "--seeds", "2", "--methods", "ce,lr-m-dyr-h,gce", "--noise", "0.5", "--out", str(out),
               "--device", "cpu", "--quiet"]
    assert main(command) == 0
    table = (out / "table.md").read_text()
    assert "selected test accuracy" in table and "each method minus LR-M-DYR-H (0-2)" in table
    assert "| GCE |" in table and "Cost: 6 runs" in table
    with (out / "paired_differences.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    with (out / "runs.csv").open() as handle:
        runs = {(r["row"], r["seed"]): float(r["selected_val_acc"]) for r in csv.DictReader(handle)}
    gce = next(line for line in lines if line["row"] == "gce")
    by_hand = [100 * (runs[("gce", s)] - runs[("lr-m-dyr-h", s)]) for s in ("0", "1")]
    assert float(gce["mean"]) == pytest.approx(sum(by_hand) / 2)
    assert (float(gce["min"]), float(gce["max"])) == (pytest.approx(min(by_hand)), pytest.approx(max(by_hand)))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"] == "fashion-mnist-peers" and summary["cpu_time_s"] > 0 and summary["sessions"] == 1
    assert main(command) == 0  # again: nothing trained, a second line in cost.csv
    with (out / "cost.csv").open() as handle:
        cost = list(csv.DictReader(handle))
    assert [int(c["runs_trained"]) for c in cost] == [6, 0] and [int(c["runs"]) for c in cost] == [6, 6]


def test_which_presets_are_the_tools_own():
    from latentmix.methods import get_method, is_latentmix

    for name in ("lr-m-dyr-h", "m-dyr-h", "m-dyr-s", "lr-m", "lr-m-elr", "lr-m-coteaching", "lr-dividemix"):
        assert get_method(name).is_latentmix, name
    for name in ("ce", "m", "gce", "sce", "elr", "coteaching", "dividemix"):  # input mixup alone is mixup's paper
        assert not get_method(name).is_latentmix, name
    assert is_latentmix("hard", ()) and is_latentmix("none", (0, 1)) and not is_latentmix("none", (0,))
