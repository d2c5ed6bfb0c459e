"""Tests for `latentmix report`: tables (mean ± std by row x noise, the paper's numbers beside
ours), CSV, PNG figures and the self-contained HTML page, from an output folder or a sweep store.

Most checks use fake run folders with known metrics (hand-computed means and sample standard
deviations); one tiny `reproduce spiral` and one tiny sweep check real output, read both from the
folder and from the SQLite store.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest

from latentmix.cli import main
from latentmix.errors import ConfigError
from latentmix import report as report_module
from latentmix import report_data as report_data_module
from latentmix.report import write_report
from latentmix.report_data import load_report_data
from latentmix.summary_tables import markdown_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_FIELDS = ["epoch", "lr", "train_loss", "val_acc", "train_acc_noisy", "train_acc_clean", "bootstrapping",
                 "detection_auc", "detection_precision", "detection_recall", "epoch_time_s"]



# --------------------------------------------------------------------------------------------
# Fake run folders with known numbers
# --------------------------------------------------------------------------------------------

# (method, layers, noise, seed) -> per-epoch val_acc; best = max, last = the last value.
FAKE_VAL = {
    ("ce", None, 0.0, 0): [0.50, 0.80, 0.70],
    ("ce", None, 0.0, 1): [0.60, 0.90, 0.85],
    ("ce", None, 0.2, 0): [0.40, 0.60, 0.55],
    ("ce", None, 0.2, 1): [0.45, 0.65, 0.64],
    ("m", None, 0.0, 0): [0.30, 0.70, 0.70],
    ("m", None, 0.0, 1): [0.40, 0.72, 0.71],
    ("m", None, 0.2, 0): [0.30, 0.50, 0.40],
    ("lr-m", "1-3", 0.0, 0): [0.70, 0.95, 0.90],
    ("lr-m", "1-3", 0.0, 1): [0.75, 0.97, 0.93],
    ("lr-m", "1-3", 0.0, 2): [0.80, 0.96, 0.96],
    ("lr-m", "1-3", 0.2, 0): [0.60, 0.80, 0.78],
    ("lr-m", "1-3", 0.2, 1): [0.62, 0.84, 0.80],
    ("lr-m", "2-4", 0.0, 0): [0.72, 0.93, 0.92],
    ("lr-m", "2-4", 0.2, 0): [0.66, 0.86, 0.81],
    ("lr-m", "2-4", 0.2, 1): [0.64, 0.82, 0.82],
}
# detection AUC per (row, noise, seed) at the last epoch (noisy runs only)
FAKE_AUC = {("ce", 0.2, 0): 0.70, ("ce", 0.2, 1): 0.80, ("m", 0.2, 0): 0.65, ("lr-m", 0.2, 0): 0.90,
            ("lr-m", 0.2, 1): 0.94}


def _fake_run_id(method, layers, noise, seed):
    return f"{method}{'' if layers is None else '_L' + layers}_n{noise:g}_s{seed}"


def write_fake_run(root: Path, dataset: str, method: str, layers, noise: float, seed: int, val: list,
                   auc=None, finished: bool = True, alpha=None, run_id=None) -> Path:
    run_dir = root / "runs" / (run_id or _fake_run_id(method, layers, noise, seed))
    run_dir.mkdir(parents=True)
    config = {"dataset": dataset, "method": method, "layers": layers, "alpha": alpha, "correction": None,
              "noise": noise, "seed": seed, "epochs": len(val)}
    (run_dir / "config.json").write_text(json.dumps({"config": config}))
    with (run_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        for epoch, value in enumerate(val, start=1):
            last = epoch == len(val)
            writer.writerow({"epoch": epoch, "lr": 0.01, "train_loss": 1.0 / epoch, "val_acc": value,
                             "train_acc_noisy": value - 0.05 if epoch % 2 == 0 or last else "",
                             "train_acc_clean": "", "bootstrapping": "False",
                             "detection_auc": (auc - 0.1 * (len(val) - epoch)) if auc is not None and epoch > 1 else "",
                             "epoch_time_s": 0.01})
    if finished:
        best_epoch = max(range(len(val)), key=lambda i: val[i]) + 1
        (run_dir / "result.json").write_text(json.dumps({
            "method": method, "dataset": dataset, "noise": noise, "seed": seed, "epochs": len(val),
            "best_val_acc": max(val), "last_val_acc": val[-1], "best_epoch": best_epoch,
            "last_train_acc_noisy": val[-1] - 0.05, "detection_auc": auc, "wall_time_s": 0.1,
        }))
    return run_dir


@pytest.fixture
def fake_out(tmp_path) -> Path:
    out = tmp_path / "sweep-out"
    for (method, layers, noise, seed), val in FAKE_VAL.items():
        write_fake_run(out, "spiral", method, layers, noise, seed, val, auc=FAKE_AUC.get((method, noise, seed)))
    # an unfinished run (no result.json): counted, but in no table
    write_fake_run(out, "spiral", "ce", None, 0.0, 7, [0.99, 0.99], finished=False)
    return out


def _expected(rows_runs, which):
    """mean ± std (ddof=1) in percent of best or last val acc over the given runs."""
    values = [100 * (max(v) if which == "best" else v[-1]) for v in rows_runs]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(mean, std, paper=None, digits=1, n=2):
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")  # one seed: no spread shown
    return text + (f" ({paper:.1f})" if paper is not None else "")


def _table_lines(markdown: str, title_part: str) -> list[list[str]]:
    """The cells of the markdown table whose title contains `title_part` (header first)."""
    block = markdown.split(title_part, 1)[1].split("\n\n**", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path


def test_fake_folder_tables_csv_plots_html(fake_out, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(fake_out), "--out", str(out), "--quiet"]) == 0
    markdown = (out / "report.md").read_text()
    group = {}
    for (method, layers, noise, seed), val in FAKE_VAL.items():
        row = {"ce": "ce", "m": "m(0-0)"}.get(method, f"{method}({layers})")
        group.setdefault((row, noise), []).append(val)

    rows = ["ce", "m(0-0)", "lr-m(1-3)", "lr-m(2-4)"]
    paper2 = {("ce", 0.0): 93.7, ("ce", 0.2): 93.6, ("m(0-0)", 0.0): 77.9, ("m(0-0)", 0.2): 75.1,
              ("lr-m(1-3)", 0.0): 96.5, ("lr-m(1-3)", 0.2): 92.0, ("lr-m(2-4)", 0.0): 96.9, ("lr-m(2-4)", 0.2): 93.7}
    best = _table_lines(markdown, "Best validation accuracy")
    assert best[0] == ["method", "0%", "20%"]
    assert [line[0] for line in best[1:]] == rows
    for line in best[1:]:
        for column, noise in ((1, 0.0), (2, 0.2)):
            mean, std = _expected(group[(line[0], noise)], "best")
            n = len(group[(line[0], noise)])
            assert line[column] == _cell(mean, std, paper2[(line[0], noise)], n=n), (line, noise)
    # hand-computed spot check: ce at 0%: best 80, 90 -> 85.0 ± 7.1 (stdev of (80, 90) = 7.07)
    assert best[1][1] == "85.0 ± 7.1 (93.7)"
    # a single seed: no "± 0.0" (there is no spread to show)
    assert best[2][2] == "50.0 (75.1)"
    # the unfinished run (0.99 val acc) is in no table
    assert "99.0" not in markdown

    last = _table_lines(markdown, "Last-epoch validation accuracy")
    assert [line[0] for line in last[1:]] == rows
    for line in last[1:]:
        for column, noise in ((1, 0.0), (2, 0.2)):
            mean, std = _expected(group[(line[0], noise)], "last")
            assert line[column] == _cell(mean, std, n=len(group[(line[0], noise)])), (line, noise)  # no paper number

    auc = _table_lines(markdown, "detection AUC")
    auc_rows = {line[0]: line[1:] for line in auc[1:]}
    assert auc_rows["ce"] == ["–", _cell(0.75, statistics.stdev([0.70, 0.80]), digits=3)]
    assert auc_rows["lr-m(1-3)"][1] == _cell(0.92, statistics.stdev([0.90, 0.94]), digits=3)

    # CSV: one line per row x noise, means in percent, the paper's Table 2 beside them
    with (out / "report.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["row"], float(line["noise"])) for line in lines] == [(r, n) for r in rows for n in (0.0, 0.2)]
    for line in lines:
        runs = group[(line["row"], float(line["noise"]))]
        mean, std = _expected(runs, "best")
        assert float(line["best_acc_mean"]) == pytest.approx(mean, abs=1e-3)
        assert float(line["best_acc_std"]) == pytest.approx(std, abs=1e-3)
        assert float(line["last_acc_mean"]) == pytest.approx(_expected(runs, "last")[0], abs=1e-3)
        assert int(line["n"]) == len(runs)
        assert float(line["best_acc_paper"]) == paper2[(line["row"], float(line["noise"]))]
        assert line["last_acc_paper"] == ""
    ce20 = next(line for line in lines if line["row"] == "ce" and line["noise"] == "0.2")
    assert float(ce20["detection_auc_mean"]) == pytest.approx(0.75)
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == len(FAKE_VAL) + 1
    assert sum(run["finished"] == "False" for run in runs) == 1

    # figures: per noise rate, val / train accuracy; detection AUC only where there is one; heatmaps
    names = {path.name for path in out.glob("*.png")}
    assert names == {"val_acc_n0.png", "val_acc_n20.png", "train_acc_noisy_n0.png", "train_acc_noisy_n20.png",
                     "detection_auc_n20.png", "heatmap_best_acc.png", "heatmap_paper_table2.png"}
    for name in names:
        _assert_png(out / name)

    # HTML: header, the tables as HTML tables, every PNG inline
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert str(fake_out.resolve()) in page and "generated" in page
    assert "16 (15 finished, 1 unfinished)" in page
    assert page.count("<table>") == 4  # best, last, AUC, the run list
    assert "<th>lr-m(2-4)</th>" in page and "<td>85.0 ± 7.1 (93.7)</td>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(names)
    assert all(base64.b64decode(image)[:8] == PNG_MAGIC for image in images)
    assert not re.findall(r'src="(?!data:image/png;base64,)', page)  # nothing outside the page


def test_default_out_and_summary(fake_out, capsys):
    assert main(["report", str(fake_out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "16 run(s) (15 finished)" in printed and "report.html" in printed
    assert (fake_out / "report" / "report.html").exists()


def test_no_plots(fake_out, tmp_path):
    assert main(["report", str(fake_out), "--out", str(tmp_path / "r"), "--no-plots", "--quiet"]) == 0
    assert not list((tmp_path / "r").glob("*.png"))
    assert "data:image/png" not in (tmp_path / "r" / "report.html").read_text()


def test_alpha_variants_get_their_own_rows(tmp_path):
    out = tmp_path / "o"
    write_fake_run(out, "spiral", "lr-m", "1-3", 0.2, 0, [0.5, 0.6], alpha=0.5, run_id="a")
    write_fake_run(out, "spiral", "lr-m", "1-3", 0.2, 0, [0.5, 0.8], alpha=2.0, run_id="b")
    data = load_report_data(str(out), progress=False)
    assert sorted(run.row for run in data.runs) == ["lr-m(1-3) [α=0.5]", "lr-m(1-3) [α=2]"]


def test_detection_auc_known_at_one_epoch_is_a_point_per_method(tmp_path, monkeypatch):
    """Population runs have the detection AUC of the last epoch only: a curve per method would be a
    lone dot on an epoch axis (284..316 for 300 epochs); it is one point per method on an AUC axis."""
    import latentmix.plots as plots

    out = tmp_path / "grid"
    aucs = {("ce", 0): 0.71, ("ce", 1): 0.73, ("lr-m", 0): 0.90, ("lr-m", 1): 0.94}
    for (method, seed), auc in aucs.items():
        write_fake_run(out, "spiral", method, "1-3" if method == "lr-m" else None, 0.2, seed, [0.5, 0.8], auc=auc)
    figures = {}
    save = plots._save

    def keep(fig, path):
        figures[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    files = write_report(load_report_data(str(out), progress=False), tmp_path / "r", plots=True)
    assert any(path.name == "detection_auc_n20.png" for path in files.figures)
    ax = figures["detection_auc_n20.png"].axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["ce", "lr-m(1-3)"]
    low, high = ax.get_xlim()
    assert 0.6 < low < 0.71 and 0.94 < high < 1.0  # the values' range, not epochs
    assert ax.get_title().endswith(", at epoch 2")
    _assert_png(tmp_path / "r" / "detection_auc_n20.png")
    # curves known at many epochs stay curves over the epochs
    assert figures["val_acc_n20.png"].axes[0].get_xlabel() == "epoch"


def test_cifar10_rows_get_table1_numbers_and_footnote(tmp_path):
    out = tmp_path / "c"
    for seed in (0, 1):
        write_fake_run(out, "cifar10", "lr-m-dyr-h", None, 0.0, seed, [0.5, 0.9])
        write_fake_run(out, "cifar10", "ce", None, 0.0, seed, [0.5, 0.8])
    files = write_report(load_report_data(str(out), progress=False), tmp_path / "r", plots=False)
    markdown = files.markdown.read_text()
    best = _table_lines(markdown, "Best test accuracy")
    assert best[1] == ["ce", "80.0 ± 0.0 (94.7)"] and best[2] == ["lr-m-dyr-h", "90.0 ± 0.0 (94.5)"]
    last = _table_lines(markdown, "Last-epoch test accuracy")
    assert last[1] == ["ce", "80.0 ± 0.0 (94.6)"] and last[2] == ["lr-m-dyr-h", "90.0 ± 0.0 (84.6†)"]
    assert "very likely a typo" in markdown
    assert "<p class=\"note\">† Paper" in files.html.read_text()


def test_markdown_table_keeps_its_interface():
    results = [{"row": "ce", "noise": 0.2, "best_val_acc": 0.5}, {"row": "ce", "noise": 0.2, "best_val_acc": 0.7}]
    table = markdown_table(results, "best_val_acc", ["ce"], [0.2])
    assert "| ce | **60.0 ± 14.1** |" in table
    assert "| ce | **0.600 ± 0.141** |" in markdown_table(results, "best_val_acc", ["ce"], [0.2], scale=1.0, digits=3)


def test_progress_bar_for_long_reports(fake_out, monkeypatch, capsys):
    monkeypatch.setattr(report_data_module, "PROGRESS_MIN_RUNS", 5)
    load_report_data(str(fake_out), progress=True)
    assert capsys.readouterr().err == ""  # stderr is no terminal here: no bar (a log would fill with them)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    load_report_data(str(fake_out), progress=True)
    assert "loading runs" in capsys.readouterr().err
    monkeypatch.setattr(report_data_module, "PROGRESS_MIN_RUNS", 1000)
    load_report_data(str(fake_out), progress=True)
    assert "loading runs" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such folder"):
        load_report_data(str(tmp_path / "missing"))
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Traceback" not in err

    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no runs in" in capsys.readouterr().err

    assert main(["report", f"sqlite:///{tmp_path / 'nothing.db'}"]) == 2
    assert "no sweep store" in capsys.readouterr().err

    assert main(["report", str(tmp_path / "empty"), "--study", "x"]) == 2
    assert "no sweep.db" in capsys.readouterr().err

    only_unfinished = tmp_path / "u"
    write_fake_run(only_unfinished, "spiral", "ce", None, 0.0, 0, [0.5], finished=False)
    assert main(["report", str(only_unfinished), "--quiet"]) == 2
    assert "no finished runs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Real runs: a tiny reproduce (folder and store), a tiny sweep without its run folders
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "spiral"
    code = main(["reproduce", "spiral", "--seeds", "2", "--epochs", "2", "--noise", "0,0.2", "--out", str(out),
                 "--quiet", "--device", "cpu", "--threads", "1"])
    assert code == 0
    return out


def test_reproduce_folder_and_store_give_the_same_tables(reproduced, tmp_path):
    from latentmix.experiments import SPIRAL_RANGES

    assert main(["report", str(reproduced), "--out", str(tmp_path / "folder"), "--quiet"]) == 0
    markdown = (tmp_path / "folder" / "report.md").read_text()
    best = _table_lines(markdown, "Best validation accuracy")
    assert [line[0] for line in best[1:]] == ["ce", "m(0-0)"] + [f"lr-m({r})" for r in SPIRAL_RANGES]
    assert best[0] == ["method", "0%", "20%"]
    assert best[1][1].endswith("(93.7)") and best[-1][2].endswith("(94.1)")  # Table 2: ce 0%, lr-m(4-5) 20%

    # our numbers match reproduce's own results.csv
    with (reproduced / "results.csv").open() as handle:
        theirs = {(r["row"], float(r["noise"])): r for r in csv.DictReader(handle)}
    with (tmp_path / "folder" / "report.csv").open() as handle:
        ours = list(csv.DictReader(handle))
    assert len(ours) == 17 * 2
    for line in ours:
        row = "m" if line["row"] == "m(0-0)" and ("m", float(line["noise"])) in theirs else line["row"]
        other = theirs[(row, float(line["noise"]))]
        assert float(line["best_acc_mean"]) == pytest.approx(float(other["best_val_acc_mean"]), abs=1e-3)
        assert float(line["last_acc_std"]) == pytest.approx(float(other["last_val_acc_std"]), abs=1e-3)
        assert line["n"] == "2"
    for name in ("val_acc_n0.png", "val_acc_n20.png", "detection_auc_n20.png", "heatmap_best_acc.png"):
        _assert_png(tmp_path / "folder" / name)

    # the same runs read from the sweep store reproduce left behind
    url = f"sqlite:///{(reproduced / 'sweep.db').resolve()}"
    assert main(["report", url, "--out", str(tmp_path / "store"), "--quiet", "--no-plots"]) == 0
    assert (tmp_path / "store" / "report.csv").read_text() == (tmp_path / "folder" / "report.csv").read_text()
    page = (tmp_path / "store" / "report.html").read_text()
    assert "sweep.db" in page and "spiral-table2" in page
    # a .db path works too, and --study picks one sweep
    assert main(["report", str(reproduced / "sweep.db"), "--study", "spiral-table2", "--out", str(tmp_path / "db"),
                 "--quiet", "--no-plots"]) == 0
    assert main(["report", url, "--study", "nope", "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_tiny_sweep_store_without_run_folders(tmp_path):
    pytest.importorskip("optuna")
    from latentmix.sweep import run_sweep
    from latentmix.config import RunConfig

    configs = [RunConfig(dataset="spiral", method=m, layers=layers, noise=0.2, seed=s, epochs=3, batch_size=250,
                         device="cpu", checkpoint=False)
               for m, layers in (("ce", None), ("lr-m", "1-3")) for s in (0, 1)]
    out = tmp_path / "sw"
    results = run_sweep("tiny", configs, out, vectorized=False, progress=False)
    shutil.rmtree(out / "runs")  # the store alone: summaries from trial attributes, curves from intermediate values
    report_dir = tmp_path / "rep"
    assert main(["report", f"sqlite:///{(out / 'sweep.db').resolve()}", "--out", str(report_dir), "--quiet"]) == 0
    best = _table_lines((report_dir / "report.md").read_text(), "Best validation accuracy")
    assert [line[0] for line in best[1:]] == ["ce", "lr-m(1-3)"]
    for line in best[1:]:
        values = [100 * r["best_val_acc"] for r in results if r["row"] == line[0]]
        assert line[1] == _cell(statistics.mean(values), statistics.stdev(values), paper=92.0 if line[0] != "ce" else 93.6)
    _assert_png(report_dir / "val_acc_n20.png")
    assert "data:image/png;base64," in (report_dir / "report.html").read_text()
    assert not (report_dir / "train_acc_noisy_n20.png").exists()  # not in the store
    assert default_out_sqlite(out) == out / "report"


def default_out_sqlite(out: Path) -> Path:
    from latentmix.report_cli import default_out

    return default_out(f"sqlite:///{(out / 'sweep.db').resolve()}", None).resolve()


def test_run_rows_take_the_wall_time_from_timing_json(tmp_path):
    """result.json holds no timings (same-seed runs give the same file); the report reads them
    from timing.json, summed over the processes of a resumed run."""
    run_dir = write_fake_run(tmp_path, "spiral", "ce", None, 0.0, 0, [0.5, 0.6])
    result = json.loads((run_dir / "result.json").read_text())
    del result["wall_time_s"]
    (run_dir / "result.json").write_text(json.dumps(result))
    (run_dir / "timing.json").write_text(json.dumps({"wall_time_s": 7.5, "segments": [
        {"epochs": [1, 1], "wall_time_s": 3.0}, {"epochs": [2, 2], "wall_time_s": 4.5}], "epoch_time_s": [3.0, 4.5]}))
    rows = report_module.run_rows(load_report_data(str(tmp_path), progress=False))
    assert [row["wall_time_s"] for row in rows] == [7.5]


def test_class_dependent_noise_gets_its_own_columns(tmp_path):
    # the same rate of symmetric and class-dependent noise: two columns, never averaged together
    out = tmp_path / "o"
    for kind, vals in (("symmetric", ([0.5, 0.6], [0.5, 0.8])), ("asymmetric", ([0.2, 0.3], [0.4, 0.3]))):
        for seed, val in enumerate(vals):
            run_dir = write_fake_run(out, "fashion-mnist", "ce", None, 0.2, seed, val,
                                     run_id=f"ce_{kind}_s{seed}")
            config = json.loads((run_dir / "config.json").read_text())
            config["config"]["noise_kind"] = kind
            (run_dir / "config.json").write_text(json.dumps(config))
    files = write_report(load_report_data(str(out), progress=False), tmp_path / "rep", plots=False)
    best = _table_lines(Path(files.markdown).read_text(), "Best")
    assert best[0] == ["method", "20%", "asym. 20%"]
    assert best[1] == ["ce", _cell(70.0, 14.142), _cell(35.0, 7.071)]  # (60, 80) and (30, 40)
    with open(files.csv, newline="") as handle:
        rows = {(r["noise_kind"], r["noise"]): r for r in csv.DictReader(handle)}
    assert float(rows[("asymmetric", "0.2")]["best_acc_mean"]) == pytest.approx(35.0)
    assert float(rows[("symmetric", "0.2")]["last_acc_mean"]) == pytest.approx(70.0)  # (60 + 80) / 2


def test_titles_promise_no_std_that_the_cells_do_not_show():
    from latentmix.summary_tables import seeds_text

    assert seeds_text(1) == "1 seed" and seeds_text(3) == "mean ± std over 3 seeds"
    assert seeds_text(1, 3) == "mean ± std over 1-3 seeds" and seeds_text(0) == "no seeds"
