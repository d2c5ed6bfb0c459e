"""Tests for latentmix.sweep: the grid as an Optuna study, resumable and shared by many workers.

The multi-worker tests start real worker processes (``python -m latentmix sweep run``) on a store
(a SQLite file, and a PostgreSQL server started on loopback for the test), SIGKILL one worker in
the middle of a run, and check that every run of the grid finished exactly once: one COMPLETE trial
per run id, its result.json, all its per-epoch intermediate values, and the killed run retried from
its checkpoint. Where PostgreSQL cannot start, that test skips and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from latentmix.errors import ConfigError  # noqa: E402
from latentmix.experiments import Grid, GridMethod
from latentmix.naming import run_id  # noqa: E402
from latentmix.sweep import (  # noqa: E402
    SweepStore, claim_runs, collect_results, load_spec, run_sweep, run_worker, spec_from_dict, sweep_counts,
)
from latentmix.config import RunConfig  # noqa: E402

TINY = dict(dataset="spiral", epochs=3, batch_size=250, device="cpu")


def _url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


# --------------------------------------------------------------------------------------------
# The package: one module per concern, each importing only those listed before it
# --------------------------------------------------------------------------------------------

MODULE_ORDER = ["spec", "trials", "lock", "store", "results", "claim", "worker", "launch", "cli"]


def test_sweep_modules_import_one_way():
    import ast

    import latentmix.sweep

    folder = Path(latentmix.sweep.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == sorted(MODULE_ORDER)
    backwards = []
    for name in MODULE_ORDER:
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("latentmix.sweep."):
                imported = node.module.rsplit(".", 1)[1]
                if MODULE_ORDER.index(imported) >= MODULE_ORDER.index(name):
                    backwards.append(f"{name} imports {imported}")
    assert not backwards


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


def test_spec_product_and_settings(tmp_path):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'name = "s"\ndataset = "spiral"\n'
        'methods = ["ce", "lr-m", {method = "m-dyr-h", layers = ["0-1"], alphas = [1.0]}]\n'
        'layers = ["1-3", "2-4"]\nalphas = [0.5, 2.0]\nnoise = [0.0, 0.4]\nseeds = 2\nepochs = 7\n'
        '[settings]\nbatch_size = 64\nlr = 0.05\n'
    )
    spec = load_spec(spec_path)
    # ce: 2 noise x 2 seeds (layers and alphas apply to mixing methods only); lr-m: 2 x 2 x 2 x 2; m-dyr-h: 1 x 1 x 2 x 2
    assert len(spec.configs) == 4 + 16 + 4
    assert all(c.epochs == 7 and c.batch_size == 64 and c.lr == 0.05 for c in spec.configs)
    ce = [c for c in spec.configs if c.method == "ce"]
    assert {(c.layers, c.alpha) for c in ce} == {(None, None)}
    lrm = {(c.layers, c.alpha) for c in spec.configs if c.method == "lr-m"}
    assert lrm == {("1-3", 0.5), ("1-3", 2.0), ("2-4", 0.5), ("2-4", 2.0)}
    assert {(c.layers, c.alpha) for c in spec.configs if c.method == "m-dyr-h"} == {("0-1", 1.0)}
    assert len({run_id(c) for c in spec.configs}) == len(spec.configs)


@pytest.mark.parametrize("values, message", [
    ({"methods": ["ce"]}, "needs a 'name'"),
    ({"name": "x", "method": "ce"}, "unknown key"),
    ({"name": "x", "settings": {"noise": 0.2}}, "top level"),
    ({"name": "x", "settings": {"batchsize": 2}}, "unknown run setting"),
    ({"name": "x", "methods": ["nope"]}, "spec key .methods. must be one of ce, .*got .nope."),
    ({"name": "x", "methods": ["ce", "ce"]}, "twice"),
    ({"name": "x", "noise": [1.5]}, "noise rates"),
])
def test_spec_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_dict(values)


# --------------------------------------------------------------------------------------------
# One process
# --------------------------------------------------------------------------------------------


def test_sweep_runs_once_and_resume_trains_nothing(tmp_path):
    configs = [RunConfig(method=m, layers=layers, noise=0.2, seed=s, **TINY)
               for m, layers in (("ce", None), ("m-dyr-h", None)) for s in (0, 1)]
    out = tmp_path / "out"
    results = run_sweep("one", configs, out, vectorized=False, progress=False)
    assert [r["run_id"] for r in results] == [run_id(c) for c in configs]
    study = SweepStore(_url(out / "sweep.db")).load("one")
    for trial in study.trials:
        assert trial.state.name == "COMPLETE"
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == trial.user_attrs["result"]["best_val_acc"] == max(trial.intermediate_values.values())
        assert Path(trial.user_attrs["run_dir"], "result.json").exists()
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"]["done"] == 4 and summary["this_worker"]["trained"] == 4

    again = run_sweep("one", configs, out, vectorized=False, progress=False)
    assert again == results
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["this_worker"]["trained"] == 0 and summary["enqueued"] == {"added": 0, "requeued": 0}
    assert len(study.trials) == 4

    # the same sweep name with other settings is refused, not silently mixed
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep("one", [replace(c, epochs=4) for c in configs], out, progress=False)


def test_existing_result_json_is_reused(tmp_path):
    from latentmix.training import train

    config = RunConfig(method="lr-m", noise=0.2, **TINY)
    out = tmp_path / "out"
    train(config, run_dir=out / "runs" / run_id(config), progress=False)
    run_sweep("reuse", [config], out, progress=False)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["this_worker"]["reused"] == 1 and summary["this_worker"]["trained"] == 0
    trial = SweepStore(_url(out / "sweep.db")).load("reuse").trials[0]
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [1, 2, 3]
    timing = json.loads((out / "runs" / run_id(config) / "timing.json").read_text())
    assert trial.user_attrs["result"]["wall_time_s"] == timing["wall_time_s"]  # read back from timing.json


def test_population_trains_compatible_runs_together(tmp_path):
    population = pytest.importorskip("latentmix.population")
    configs = [RunConfig(method=m, noise=0.2, seed=s, **TINY) for m in ("ce", "lr-m") for s in (0, 1)]
    configs.append(RunConfig(method="m-dyr-h", noise=0.2, **TINY))  # corrects: not population-capable
    assert not population.supports_population(configs[-1])
    out = tmp_path / "out"
    results = run_sweep("pop", configs, out, vectorized=True, population_size=8, progress=False)
    by_id = {r["run_id"]: r for r in results}
    assert len(by_id) == 5
    assert all(by_id[run_id(c)]["trained_as"].startswith("population") for c in configs[:4])
    assert by_id[run_id(configs[-1])]["trained_as"] == "sequential"
    for r in results:
        assert (Path(r["run_dir"]) / "result.json").exists() and (Path(r["run_dir"]) / "metrics.csv").exists()
        # timings: in the results and timing.json, never in result.json (same-seed runs, same file)
        timing = json.loads((Path(r["run_dir"]) / "timing.json").read_text())
        assert r["wall_time_s"] == pytest.approx(timing["wall_time_s"], abs=2e-3) and timing["wall_time_s"] > 0
        assert len(timing["epoch_time_s"]) == 3
        assert "wall_time_s" not in json.loads((Path(r["run_dir"]) / "result.json").read_text())
    study = SweepStore(_url(out / "sweep.db")).load("pop")
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)


def test_dead_worker_is_retried_from_its_checkpoint(tmp_path):
    """A worker takes a run, trains 2 of 4 epochs (checkpointed) and dies without a word: after the
    grace period the next worker fails the stale trial, the retry resumes at epoch 3."""
    from latentmix.training import train

    config = RunConfig(method="lr-m", noise=0.2, **{**TINY, "epochs": 4})
    out = tmp_path / "out"
    store = SweepStore(_url(out / "sweep.db"), heartbeat_interval=1, grace_period=1)
    study, _ = store.prepare("dead", [config])
    (claim,) = claim_runs(store, study)

    class Died(Exception):
        pass

    def die_after_two(row):
        if row["epoch"] == 2:
            raise Died

    with pytest.raises(Died):
        train(claim.config, run_dir=out / "runs" / claim.run_id, progress=False, on_epoch_end=die_after_two)
    time.sleep(2.5)  # no heartbeat for longer than the grace period

    report = run_worker(store, study, out, progress=False, poll_interval=0.2)
    assert report.stale_failed == 1 and report.trained == 1 and report.resumed == 1
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == trials[0].number
    assert retry.user_attrs["resumed_from_epoch"] == 2
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    counts = sweep_counts(study)
    assert counts["done"] == 1 and counts["retries"] == 1 and counts["complete_trials"] == 1


def test_a_run_another_worker_took_is_not_taken_again(tmp_path, monkeypatch):
    """The race made certain: worker A lists the waiting trials, worker B takes the first, then A
    tries to take it from its stale list: Optuna's WAITING -> RUNNING refuses, A takes the next."""
    from optuna.trial import TrialState

    configs = [RunConfig(method="ce", noise=0.2, seed=s, **TINY) for s in range(2)]
    url = _url(tmp_path / "sweep.db")
    store_a, store_b = SweepStore(url), SweepStore(url)
    study_a, _ = store_a.prepare("race", configs)
    study_b = store_b.load("race")
    stale = store_a.storage.get_all_trials(study_a._study_id, deepcopy=False, states=(TrialState.WAITING,))
    (taken_by_b,) = claim_runs(store_b, study_b)
    monkeypatch.setattr(store_a.storage, "get_all_trials", lambda *args, **kwargs: stale)
    (taken_by_a,) = claim_runs(store_a, study_a)
    assert taken_by_b.run_id == run_id(configs[0]) and taken_by_a.run_id == run_id(configs[1])


def test_workers_claiming_at_once_take_each_run_once(tmp_path):
    """Claims take no lock: Optuna's WAITING -> RUNNING change decides. Four workers (each its own
    store connection) claim from one queue at once; every run is taken by exactly one of them."""
    import threading

    configs = [RunConfig(method="ce", noise=0.2, seed=s, **TINY) for s in range(12)]
    url = _url(tmp_path / "sweep.db")
    SweepStore(url).prepare("race", configs)
    taken: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        store = SweepStore(url)
        study = store.load("race")
        start.wait()
        while claims := claim_runs(store, study, limit=1, vectorized=False):
            taken[index] += [claim.run_id for claim in claims]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    everything = [rid for ids in taken for rid in ids]
    assert sorted(everything) == sorted(run_id(c) for c in configs)  # each once, none twice
    study = SweepStore(url).load("race")
    assert {t.state.name for t in study.get_trials()} == {"RUNNING"} and len(study.get_trials()) == 12


def test_interrupted_run_is_put_back(tmp_path, monkeypatch):
    import latentmix.training as training

    config = RunConfig(method="lr-m", noise=0.2, **TINY)
    out = tmp_path / "out"
    store = SweepStore(_url(out / "sweep.db"))
    study, _ = store.prepare("ctrl-c", [config])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_worker(store, study, out, vectorized=False, progress=False)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "WAITING"]  # queued again for the other workers
    monkeypatch.undo()
    run_worker(store, study, out, progress=False)
    assert sweep_counts(study)["done"] == 1 and sweep_counts(study)["requeued"] == 1


def test_run_grid_goes_through_the_store(tmp_path):
    from latentmix.experiments.runner import run_grid

    grid = Grid(name="g", dataset="spiral", methods=(GridMethod("ce"), GridMethod("m"), GridMethod("lr-m", layers="1-2")),
                noise_rates=(0.2,), seeds=(0,), base=RunConfig(**TINY))
    results = run_grid(grid, tmp_path, progress=False)
    assert [(r["row"], r["run_id"]) for r in results] == [
        ("ce", "ce_n0.2_s0"), ("m(0-0)", "m_n0.2_s0"), ("lr-m(1-2)", "lr-m_L1-2_n0.2_s0")]
    assert (tmp_path / "sweep.db").exists()
    # run again (the plain path): every run is finished, so nothing trains and the summaries are the same
    assert run_grid(grid, tmp_path, vectorized=False, progress=False) == results
    assert json.loads((tmp_path / "sweep.json").read_text())["this_worker"]["trained"] == 0
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        run_grid(grid, tmp_path, workers=0, progress=False)


def test_a_store_from_before_the_spiral_row_name_still_fills_the_table(tmp_path):
    """Stores written before `row_label` named the spirals' input mixup "m(0-0)" hold the row "m";
    the grid's rows come from its own configs, so a resumed table still finds the run."""
    from latentmix.experiments.runner import run_grid

    grid = Grid(name="g", dataset="spiral", methods=(GridMethod("m"),), noise_rates=(0.2,), seeds=(0,),
                base=RunConfig(**TINY))
    store = SweepStore(_url(tmp_path / "sweep.db"))
    study, _ = store.prepare("g", grid.runs())
    (trial,) = study.get_trials(deepcopy=False)
    study._storage.set_trial_user_attr(trial._trial_id, "row", "m")  # as an older version enqueued it
    run_grid(grid, tmp_path, progress=False)
    assert [r["row"] for r in collect_results(study)] == ["m"]  # the store's own, without the grid
    assert [r["row"] for r in collect_results(study, grid.runs())] == ["m(0-0)"]


def test_cli_status(tmp_path, capsys):
    from latentmix.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "cli"\nmethods = ["ce"]\nnoise = [0.2]\nepochs = 2\nout = "{tmp_path / "out"}"\n'
                    '[settings]\nbatch_size = 250\ndevice = "cpu"\n')
    assert main(["sweep", "run", str(spec), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", "status", str(spec)]) == 0
    assert "1 runs: 1 done, 0 running, 0 pending, 0 failed" in capsys.readouterr().out
    assert main(["sweep", "status", "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 1


# --------------------------------------------------------------------------------------------
# Many worker processes, one killed
# --------------------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on loopback (as the postgres/nobody user when run as root)."""
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        found = shutil.which("initdb")
        if not found:
            pytest.skip("PostgreSQL not available: no initdb under /usr/lib/postgresql/15/bin or on PATH")
        initdb = Path(found)
    pg_ctl = initdb.parent / "pg_ctl"
    pytest.importorskip("psycopg2", reason="PostgreSQL tests need psycopg2-binary")
    root = Path(tempfile.mkdtemp(prefix="latentmix-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        runuser = shutil.which("runuser")
        if user is None or runuser is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("PostgreSQL refuses to run as root and no postgres/nobody user + runuser is available")
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = [runuser, "-u", user, "--"]
    data, port = root / "data", _free_port()

    def run(args, timeout=90):
        return subprocess.run(prefix + args, capture_output=True, text=True, timeout=timeout)

    started = False
    try:
        done = run([str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        if done.returncode != 0:
            pytest.skip(f"PostgreSQL initdb failed: {(done.stderr or done.stdout).strip()[-300:]}")
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100")
        done = run([str(pg_ctl), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"])
        if done.returncode != 0:
            log = (root / "log").read_text()[-300:] if (root / "log").exists() else ""
            pytest.skip(f"PostgreSQL did not start: {(done.stderr or done.stdout).strip()[-300:]} {log}")
        started = True
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            run([str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


GRID_SPEC = """
name = "killed"
dataset = "spiral"
methods = ["ce", "lr-m", "m-dyr-h"]
layers = ["1-3"]
noise = [0.2]
seeds = 3
epochs = {epochs}
[settings]
batch_size = 100
device = "cpu"
checkpoint = true
"""


def _kill_one_worker_mid_run(tmp_path: Path, storage: str | None, epochs: int = 16) -> dict:
    """3 workers (one vectorized, two sequential) on a 9-run grid; SIGKILL a sequential worker once
    its run has checkpointed 2 epochs; the others finish the grid. Returns the figures."""
    spec = tmp_path / "spec.toml"
    spec.write_text(GRID_SPEC.format(epochs=epochs))
    out = tmp_path / "out"  # one shared output folder, as on a shared file system
    url = storage or _url(out / "sweep.db")
    base = [sys.executable, "-m", "latentmix", "sweep", "run", str(spec), "--out", str(out), "--storage", url,
            "--quiet", "--heartbeat", "1", "--grace", "3", "--poll", "0.3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    workers = [subprocess.Popen(base + (["--population", "3"] if i == 0 else ["--sequential"]), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(3)]
    sequential_pids = {w.pid for w in workers[1:]}
    killed_run = None
    try:
        observer = None
        deadline = time.time() + 90
        while killed_run is None and time.time() < deadline:
            time.sleep(0.3)
            try:
                if observer is None:
                    storage_obj = optuna.storages.RDBStorage(url)
                    observer = optuna.load_study(study_name="killed", storage=storage_obj)
                trials = observer.get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - the store or the study may not exist yet
                observer = None
                continue
            for trial in trials:
                pid = int(trial.user_attrs.get("worker", "x:0").split(":")[-1])
                if trial.state.name == "RUNNING" and pid in sequential_pids and len(trial.intermediate_values) >= 2:
                    victim = next(w for w in workers if w.pid == pid)
                    victim.send_signal(signal.SIGKILL)
                    killed_run = trial.user_attrs["run_id"]
                    break
        assert killed_run is not None, "no worker was caught in the middle of a run"
        outputs = {}
        for w in workers:
            outputs[w.pid] = w.communicate(timeout=150)[0]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    wall = time.perf_counter() - started
    for w in workers:
        if w.pid == victim.pid:
            assert w.returncode == -signal.SIGKILL
        else:
            assert w.returncode == 0, outputs[w.pid]

    # ---- every run finished exactly once, with complete results ----
    study = optuna.load_study(study_name="killed", storage=url)
    trials = study.get_trials()
    expected = {run_id(c) for c in load_spec(spec).configs}
    complete: dict[str, list] = {}
    for trial in trials:
        assert trial.state.name in ("COMPLETE", "FAIL"), f"trial {trial.number} left {trial.state.name}"
        if trial.state.name == "COMPLETE":
            complete.setdefault(trial.user_attrs["run_id"], []).append(trial)
    assert set(complete) == expected
    assert all(len(v) == 1 for v in complete.values()), "a run has two COMPLETE trials"
    for rid, (trial,) in complete.items():
        result = json.loads((out / "runs" / rid / "result.json").read_text())
        assert result["best_val_acc"] == pytest.approx(trial.value)
        assert result["epochs"] == epochs
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.user_attrs["run_id"] for t in failed] == [killed_run]
    retry = complete[killed_run][0]
    assert retry.system_attrs.get("failed_trial") == failed[0].number
    # the retry continued from the checkpoint (or, killed after writing result.json, finished from it)
    assert retry.user_attrs.get("resumed_from_epoch", 0) >= 2 or retry.user_attrs.get("reused"), retry.user_attrs
    counts = sweep_counts(study)
    assert counts["done"] == len(expected) and counts["retries"] == 1 and counts["complete_trials"] == len(expected)
    assert len(collect_results(study, load_spec(spec).configs)) == len(expected)
    figures = {"runs": len(expected), "workers": 3, "killed": 1, "retries": counts["retries"],
               "resumed_from_epoch": retry.user_attrs.get("resumed_from_epoch"), "trials": len(trials),
               "wall_s": round(wall, 1)}
    print(f"\nmulti-worker sweep ({'postgresql' if storage else 'sqlite'}): {figures}")
    return figures


def test_workers_share_a_sqlite_sweep_and_survive_a_kill(tmp_path):
    figures = _kill_one_worker_mid_run(tmp_path, storage=None)
    assert figures["retries"] == 1


def test_workers_share_a_postgresql_sweep_and_survive_a_kill(tmp_path, postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    database = f"sweep_{os.getpid()}_{int(time.time())}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {database}"))
    engine.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/" + database
    figures = _kill_one_worker_mid_run(tmp_path, storage=url)
    assert figures["retries"] == 1


def test_the_documented_postgresql_url_opens_the_store(postgres_url):
    """issue 25.10: docs/sweeps.md shows `--storage postgresql://...`; SQLAlchemy 2.1 reads that as
    psycopg 3, which the `postgres` extra does not install (the error was `No module named
    psycopg`). The plain URL opens the store through psycopg2, here with a sweep of two runs."""
    import importlib.util

    from latentmix.sweep.store import SweepStore

    assert postgres_url.startswith("postgresql+psycopg2://")
    plain = "postgresql://" + postgres_url.split("://", 1)[1]
    store = SweepStore(plain)
    if importlib.util.find_spec("psycopg") is None:
        assert store.url.startswith("postgresql+psycopg2://")
    name = f"plain_url_{os.getpid()}_{int(time.time())}"
    study, counts = store.prepare(name, [RunConfig(seed=0), RunConfig(seed=1)])
    assert counts["added"] == 2 and len(SweepStore(plain).load(name).trials) == 2


def test_a_helper_ends_when_its_parent_is_killed(tmp_path):
    """issue 25.11: `sweep run --workers 2` killed with -9 left its helper training. Helpers are
    started with `exit_with_parent`: here a parent starts a sleeping child that way and is killed;
    the child must be gone (polled for up to 30 s, a liveness check, not a timing)."""
    pytest.importorskip("ctypes")
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    child_pid_file = tmp_path / "child.pid"
    parent_code = (
        "import os, subprocess, sys, time\n"
        "from latentmix.sweep.launch import exit_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
        " preexec_fn=exit_with_parent(os.getpid()))\n"
        f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env)
    deadline = time.monotonic() + 60
    while not (child_pid_file.exists() and child_pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(child_pid_file.read_text())
    parent.kill()
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return False
        return state != "Z"  # a zombie has ended (its parent, init, reaps it)

    deadline = time.monotonic() + 30
    while alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(child_pid):
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")
