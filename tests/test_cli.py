"""The command line end to end, on tiny settings."""

import csv
import json
import re
import subprocess
import sys

import pytest

from latentmix.cli import main



def _train_args(out, *extra):
    return ["train", "--dataset", "spiral", "--device", "cpu", "--epochs", "2", "--out", str(out), "--quiet", *extra]


def test_train_then_detect(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "spiral", "--method", "lr-m", "--layers", "3-4", "--noise", "0.2",
                 "--epochs", "3", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    for name in ("config.json", "metrics.csv", "result.json", "label_issues.csv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "result.json").read_text())
    assert summary["method"] == "lr-m(3-4)"
    assert summary["mix_layers"] == "3-4"
    assert summary["noise"] == 0.2
    assert summary["epochs"] == 3
    assert summary["actual_noise_rate"] > 0
    printed = capsys.readouterr().out
    assert "lr-m(3-4)" in printed and "best val acc" in printed

    with (out / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    flagged = sum(float(row["p_noisy"]) > 0.5 for row in rows)
    assert main(["detect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{flagged} of {len(rows)} labels have P(noisy) > 0.5" in printed
    assert main(["detect", str(out), "--threshold", "1"]) == 0
    assert f"0 of {len(rows)} labels" in capsys.readouterr().out

    # a finished run is not overwritten by accident
    assert main(_train_args(out)) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" not in err  # a finished run has nothing to resume


@pytest.mark.parametrize("extra, expected", [
    (["--method", "nosuchmethod"], ["nosuchmethod", "lr-m"]),
    (["--method", "lr-m", "--layers", "0-9"], ["out of range", "0..5"]),
    (["--noise", "1.5"], ["--noise", "1.5"]),
    (["--data", "/nonexistent.npz"], ["not found", "/nonexistent.npz"]),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], ["CIFAR-10", "/nonexistent/cifar"]),
    (["--dataset", "cifar10"], ["--data-dir"]),
])
def test_bad_inputs_exit_2_with_message(tmp_path, capsys, extra, expected):
    args = ["train", "--device", "cpu", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentmix: error:")
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    assert not (tmp_path / "run" / "result.json").exists()


def test_reproduce_spiral_writes_table(tmp_path, capsys):
    out = tmp_path / "repro"
    code = main(["reproduce", "spiral", "--seeds", "1", "--epochs", "2", "--noise", "0,0.2", "--sequential",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    table = (out / "table.md").read_text()
    expected_rows = ["ce", "m(0-0)"] + [f"lr-m({low}-{high})" for low in range(5) for high in range(low + 1, 6)]
    assert len(expected_rows) == 17
    first_table = table.split("Last-epoch")[0]
    lines = [line for line in first_table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [line.split("|")[1].strip() for line in lines] == expected_rows
    header = next(line for line in first_table.splitlines() if line.startswith("| method"))
    assert "0%" in header and "20%" in header

    def paper_cells(row):
        line = next(line for line in lines if line.split("|")[1].strip() == row)
        return re.findall(r"\((\d+\.\d)\)", line)

    # the paper's Table 2 (0% and 20% columns)
    assert paper_cells("ce") == ["93.7", "93.6"]
    assert paper_cells("m(0-0)") == ["77.9", "75.1"]
    assert paper_cells("lr-m(0-1)") == ["89.8", "83.9"]
    assert paper_cells("lr-m(3-4)") == ["98.1", "94.0"]
    assert paper_cells("lr-m(4-5)") == ["96.6", "94.1"]
    for row in expected_rows:
        assert len(paper_cells(row)) == 2, row
    # 17 rows x 2 noise rates x 1 seed
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 34
    assert {int(run["epochs"]) for run in runs} == {2}


def test_module_help():
    completed = subprocess.run([sys.executable, "-m", "latentmix", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    for command in ("train", "reproduce", "detect"):
        assert command in completed.stdout


def test_no_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err
