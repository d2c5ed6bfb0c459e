"""benchmarks/bench_gpu.py (issue #28's GPU measurement), checked on the CPU with --smoke: the
files it writes, how an epoch is scaled, that a failing configuration does not lose the others,
and that on a CPU no GPU figure is claimed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from benchmark_scripts import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
SMOKE_ONLY = "plain,ce,lr-m-dyr-h/tracked,lr-m-dyr-h/reference,ce+compile"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()  # --smoke sets one thread for the process
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def smoke(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--smoke", "--only", SMOKE_ONLY, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out, json.loads((out / "bench_gpu.json").read_text()), (out / "bench_gpu.md").read_text()


def test_smoke_writes_every_configuration_with_its_parts(smoke):
    _, report, _ = smoke
    records = {r["name"]: r for r in report["configurations"]}
    assert list(records) == SMOKE_ONLY.split(",")
    assert {r["status"] for n, r in records.items() if n != "ce+compile"} == {"ok"}
    assert records["ce+compile"]["status"] == "skipped" and "compile" in records["ce+compile"]["reason"]
    for name in ("ce", "lr-m-dyr-h/tracked", "lr-m-dyr-h/reference"):
        measured = records[name]["measured"]
        # every part of train's epoch was seen (the wrappers fired), and they fit inside the epoch
        assert all(measured[part] > 0 for part in ("steps", "tracking", "fit", "eval")), (name, measured)
        assert measured["steps"] + measured["tracking"] + measured["fit"] + measured["eval"] <= measured["total"] + 1e-9
        assert len(records[name]["epochs"]) == 2  # one warm-up + one timed epoch
    assert records["plain"]["measured"]["fit"] == 0.0 and records["plain"]["measured"]["tracking"] > 0
    assert records["plain"]["x_plain"] == 1.0 and records["ce"]["x_ce"] == 1.0 and records["plain"]["x_ce"] is None
    assert records["ce"]["x_plain"] == pytest.approx(records["ce"]["full"]["total"] / records["plain"]["full"]["total"])


def test_full_epoch_scaling_by_hand(smoke):
    """--smoke: batch 16, 40 + 16 images, so 3 steps measured of 3125 (50,000 / 16); tracking, fit
    and other x 1250 (50,000 / 40); evaluation x 625 (10,000 / 16)."""
    _, report, _ = smoke
    record = next(r for r in report["configurations"] if r["name"] == "lr-m-dyr-h/tracked")
    measured, full = record["measured"], record["full"]
    assert full["steps"] == pytest.approx(measured["steps"] * 3125 / 3)
    for part in ("tracking", "fit", "other"):
        assert full[part] == pytest.approx(measured[part] * 1250)
    assert full["eval"] == pytest.approx(measured["eval"] * 625)
    assert full["total"] == pytest.approx(sum(full[p] for p in ("steps", "tracking", "fit", "eval", "other")))
    assert record["images_per_s"] == pytest.approx(40 / measured["steps"])


def test_cpu_claims_no_gpu_figure(smoke):
    out, report, text = smoke
    assert report["machine"]["card"] == "cpu" and report["machine"]["cuda"] is None
    assert len(report["checks"]) == 4
    for check in report["checks"]:
        assert check["value"] is None and check["status"].startswith("not measured"), check
    assert "card **cpu**" in text and text.count("not measured (no GPU") == 4
    for record in report["configurations"]:
        assert record.get("peak_memory_mib") is None
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "flags" not in line]
    assert sum(line.split(" | ")[0].lstrip("| ") in SMOKE_ONLY.split(",") for line in table_rows) == 5


def test_checks_on_a_gpu_follow_the_numbers(bench):
    """On a CUDA device the checks are decided by the measured ratios and the 5 s goal alone."""
    def record(name, method, total, x_plain=None, x_ce=None):
        return {"name": name, "method": method, "status": "ok", "full": {"total": total}, "x_plain": x_plain,
                "x_ce": x_ce}

    records = [record("plain", None, 3.0, 1.0), record("ce", "ce", 3.3, 1.10, 1.0),
               record("lr-m-dyr-h/tracked", "lr-m-dyr-h", 4.95, x_ce=1.5),
               record("lr-m-dyr-h/reference", "lr-m-dyr-h", 6.0, x_ce=1.82)]
    checks = bench.done_checks(records, torch.device("cuda"))
    assert [c["status"] for c in checks] == ["met", "not met", "stated", "met"]
    assert [c["value"] for c in checks] == [1.10, 1.5, 1.82, 4.95]
    assert "lr-m-dyr-h/tracked" in checks[3]["check"]
    slow = [dict(r, full={"total": r["full"]["total"] + 1.0}) for r in records]
    assert bench.done_checks(slow, torch.device("cuda"))[3]["status"] == "not met"
    missing = bench.done_checks(records[1:], torch.device("cuda"))
    assert missing[0]["status"].startswith("not measured") and missing[0]["value"] is None


def test_a_failing_configuration_is_recorded_and_the_next_runs(bench, tmp_path, monkeypatch):
    original = bench.library_epochs

    def broken_for_ce(config, *args):
        if config.method == "ce":
            raise RuntimeError("CUDA out of memory (a planted failure)\nsecond line")
        return original(config, *args)

    monkeypatch.setattr(bench, "library_epochs", broken_for_ce)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--smoke", "--only", "ce,lr-m-dyr-h/tracked", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    ce, tracked = report["configurations"]
    assert ce["status"] == "error" and ce["error"] == "RuntimeError: CUDA out of memory (a planted failure)"
    assert "broken_for_ce" in ce["traceback"]
    assert tracked["status"] == "ok" and tracked["x_ce"] is None  # no CE to compare with
    assert "error: RuntimeError" in (tmp_path / "bench_gpu.md").read_text()


def test_wrappers_are_removed_after_the_run(bench, smoke):
    from latentmix import training
    from latentmix.correction import LossCorrection

    for cls, name in ((training.Run, "set_lr"), (training.Run, "evaluate_epoch"),
                      (training.Run, "track_training_set"), (LossCorrection, "end_epoch")):
        assert getattr(cls, name).__qualname__ == f"{cls.__name__}.{name}"


def test_time_budget_skips_with_a_reason(bench, tmp_path):
    assert bench.main(["--smoke", "--only", "plain,ce", "--budget-s", "0", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert [r["status"] for r in report["configurations"]] == ["skipped", "skipped"]
    assert all(r["reason"].startswith("time budget") for r in report["configurations"]) and report["complete"]
    assert all(c["value"] is None for c in report["checks"])
    done = [{"status": "ok", "compile": False, "cost_s": 4.0}]
    assert bench.expected_cost(bench.Configuration("ce"), done) == 4.0
    assert bench.expected_cost(bench.Configuration("ce", compile=True), done) == 64.0
    assert math.isclose(bench.expected_cost(bench.Configuration("ce"), []), 0.0)
    done.append({"status": "ok", "compile": True, "cost_s": 130.0})
    assert bench.expected_cost(bench.Configuration("lr-m-dyr-h", "tracked", compile=True), done) == 130.0
    assert bench.expected_cost(bench.Configuration("m"), done) == 4.0


def test_bad_options_are_one_line(bench, capsys):
    assert bench.main(["--smoke", "--only", "ce,nonsense"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert bench.main(["--smoke", "--train-size", "42"]) == 2
    assert "multiple of 5" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert bench.main([]) == 2
        assert "--smoke" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# benchmarks/gpu_table_time.py and benchmarks/gpu_session.sh


@pytest.fixture(scope="module")
def table_time():
    with benchmark_module("gpu_table_time") as module:
        yield module


def _fake_run(folder: Path, wall: float, finished: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "timing.json").write_text(json.dumps({"wall_time_s": wall}))
    if finished:
        (folder / "result.json").write_text("{}")


def test_a_stopped_table_is_estimated_from_its_finished_runs(table_time, tmp_path):
    _fake_run(tmp_path / "runs" / "a", 10.0)
    _fake_run(tmp_path / "runs" / "b", 14.0)
    _fake_run(tmp_path / "runs" / "c", 3.0, finished=False)  # interrupted: no result.json
    record = table_time.table_record("mlp", total=8, code=None, elapsed=30.0, work=tmp_path)
    assert record["finished_runs"] == 2 and record["stopped_at_cap"] and not record["complete"]
    assert record["table_s"] == pytest.approx(120.0) and record["mean_run_s"] == pytest.approx(12.0)
    assert record["how"].startswith("estimated")
    complete = table_time.table_record("mlp", total=2, code=0, elapsed=31.0, work=tmp_path)
    assert complete["complete"] and complete["table_s"] == 31.0 and complete["how"].startswith("measured")
    failed = table_time.table_record("mlp", total=2, code=1, elapsed=5.0, work=tmp_path / "empty")
    assert failed["table_s"] is None and failed["finished_runs"] == 0
    text = table_time.markdown({"card": "cpu", "settings": {"device": "cpu", "workers": 1, "seeds": 3, "cap_s": 60,
                                                            "command": "x"}, "tables": [record, complete]})
    assert "| mlp | 2 / 8 | 30 | 120 | estimated" in text and "stopped at its share of the cap" in text


def test_the_cap_stops_the_table_command(table_time, tmp_path):
    code, elapsed = table_time.run_capped([sys.executable, "-c", "import time; time.sleep(60)"], 1.0,
                                          tmp_path / "log")
    assert code is None and elapsed < 15


def test_the_grid_size_is_the_tables(table_time):
    """6 methods x (4 symmetric + 2 class-dependent noise settings) x 3 seeds = 108 runs per table."""
    args = table_time.parse_args([])
    assert table_time.grid_size("mlp", args) == 108 and table_time.grid_size("small-cnn", args) == 108
    assert table_time.grid_size("mlp", table_time.parse_args(["--smoke"])) == 1


def test_the_session_needs_only_tracked_or_carried_files():
    """Everything gpu_session.sh runs is tracked here; what it reads besides (.whl, .gpu-data) is
    ignored by git, so it travels only when carried, and the documented device command carries it."""
    import subprocess

    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    for path in ("benchmarks/bench_gpu.py", "benchmarks/gpu_table_time.py", "benchmarks/gpu_prepare.sh"):
        assert path in script or path == "benchmarks/gpu_prepare.sh"
        if tracked:  # a git checkout (the files are committed)
            assert path in tracked, path
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/.whl/" in ignored and "/.gpu-data/" in ignored
    command = 'run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-data"], timeout_s=480)'
    assert command in script and command in (ROOT / "benchmarks" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Fashion-MNIST IDX files here")
def test_table_time_smoke_runs_one_table(table_time, tmp_path):
    assert table_time.main(["--smoke", "--models", "mlp", "--out", str(tmp_path / "out"),
                            "--work", str(tmp_path / "work")]) == 0
    report = json.loads((tmp_path / "out" / "fashion_gpu.json").read_text())
    (table,) = report["tables"]
    assert table["complete"] and table["finished_runs"] == table["total_runs"] == 1 and report["card"] == "cpu"
    assert (tmp_path / "out" / "fashion_mlp_table.md").exists()
