"""A run folder is a contract: it holds one run, and a command may only continue that run.

A run folder (``latentmix train --out DIR``, ``fit(run_dir=DIR)``) holds:

    config.json       the run's record: its settings, what they resolve to, and fingerprints (sha256)
                      of its data and training labels; written once, when a new run is accepted
    checkpoint.pt     the state after the last complete epoch (plain tensors: loads weights_only) and
                      the record of the run that saved it (a copy from another run is refused)
    checkpoint.json   the checkpoint's sha256, checked before `torch.load` sees the file
    metrics.csv       one row per epoch
    result.json       the summary of a finished run
    label_issues.csv  every training sample, most likely mislabeled first
    timing.json       wall time per process and per epoch, summed across resumes
    selected_model.pt the model's weights at the epoch picked by noisy-validation accuracy

`RunFolder` is the only writer of these files (`train`, `latentmix detect` and the sweep's
vectorized populations all go through it) and the only reader of a checkpoint and of result.json.

The rules (issue 13):

* a folder that holds a run is never replaced without `overwrite`;
* `resume` continues only the run that the folder holds: every setting that changes the result is
  compared, and the error names each one that differs; settings that only say where or how fast
  the run executes (`latentmix.config.EXECUTION_FIELDS`) may differ;
* nothing in the folder changes until the command has been accepted;
* a checkpoint is verified before use: `torch.load` does not check the zip's CRCs, so a damaged
  file would otherwise load as garbage weights;
* timings live in timing.json only, so that two same-seed runs write byte-identical
  result.json, metrics.csv and label_issues.csv.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from latentmix.data.inputs import tensors_sha256
from latentmix.errors import ConfigError
from latentmix.label_issues import write_label_issues
from latentmix.io import atomic_torch_save, atomic_write_bytes, atomic_write_csv, atomic_write_json

if TYPE_CHECKING:
    import torch

# torch is imported where it is used, so that readers of run folders (`latentmix report`) stay light.

CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.pt"
CHECKSUM_NAME = "checkpoint.json"
METRICS_NAME = "metrics.csv"
RESULT_NAME = "result.json"
LABEL_ISSUES_NAME = "label_issues.csv"
TIMING_NAME = "timing.json"
SELECTED_NAME = "selected_model.pt"  # the model's weights at the epoch picked by validation accuracy
RUN_FILES = (CONFIG_NAME, CHECKPOINT_NAME, CHECKSUM_NAME, METRICS_NAME, RESULT_NAME, LABEL_ISSUES_NAME, TIMING_NAME,
             SELECTED_NAME)
# The columns of metrics.csv, one row per epoch (`latentmix.training` fills them)
METRIC_FIELDS = [
    "epoch", "lr", "train_loss", "val_acc", "select_acc", "test_acc", "train_acc_noisy", "train_acc_clean",
    "bootstrapping", "flagged_share", "separation", "detection_auc", "detection_precision", "detection_recall",
    "select_acc_given",
]
# Columns only a run with such data measures, written only when its rows hold them: a run without a
# test set writes the metrics.csv it always did.
OPTIONAL_METRIC_FIELDS = frozenset({"test_acc", "select_acc_given"})


def metric_fields(rows: list[dict]) -> list[str]:
    """The columns of a run's metrics.csv: `METRIC_FIELDS`, less the optional ones no row holds."""
    return [name for name in METRIC_FIELDS
            if name not in OPTIONAL_METRIC_FIELDS or any(name in row for row in rows)]

# Entries of the record (config.json) besides the settings that are not compared: the machine of
# the process that wrote it; the number of data-parallel processes (a checkpoint does not depend on
# it, and docs/distributed.md supports resuming with another count); and how the data were read
# (`dataset_info` holds file paths; the data that reach the model are compared via `data_sha256`).
UNCOMPARED_ENTRIES = frozenset({"device", "amp", "channels_last", "world_size", "dataset_info"})


# --------------------------------------------------------------------------------------------
# Fingerprints and the comparison of records
# --------------------------------------------------------------------------------------------


def run_fingerprints(dataset: Any, noisy_labels: torch.Tensor) -> dict:
    """The record's identity of the data (inputs and labels of both splits) and of the run's
    training labels, independent of where the files live."""
    return {
        "num_train": dataset.num_train,
        "num_label_issue_rows": dataset.num_label_issue_rows,
        "data_sha256": tensors_sha256(dataset.train_inputs, dataset.train_labels, dataset.given_noisy_labels,
                                      dataset.val_inputs, dataset.val_labels),
        "labels_sha256": tensors_sha256(noisy_labels),
    }


def record_differences(saved: dict, new: dict) -> list[str]:
    """Each result-changing difference between a folder's record and a command's, as
    ``"NAME (was OLD, now NEW)"``. The settings (`config`) are compared first; the resolved entries
    (protocol, warm-up, fingerprints, ...) only when the settings agree, because they follow from
    the settings and naming both would report one change twice."""
    saved_config, new_config = _compared_config(saved.get("config")), _compared_config(new.get("config"))
    names = sorted(set(saved_config) | set(new_config))
    found = [_difference(name, saved_config, new_config) for name in names]
    if not any(found):
        resolved = [name for name in new if name != "config" and name not in UNCOMPARED_ENTRIES]
        found = [_difference(name, saved, new) for name in resolved if name in saved]
    return [text for text in found if text]


def _compared_config(config: Optional[dict]) -> dict:
    """The settings of a record that a resume compares. Those that say where or how fast a run
    executes may change (`latentmix.config`, `Option.execution`): a resume on another machine, a
    moved data file (the data themselves are compared by content, `data_sha256` and
    `labels_sha256`). So may the `dataset` name of a run on the user's own data (``--data``): it is
    the file's or folder's name (`latentmix.cli.config_from_args`), and a renamed file holds the same
    data. Imported here: `latentmix report` reads run folders without torch."""
    from latentmix.config import EXECUTION_FIELDS

    config = dict(config or {})
    if config.get("data"):
        config.pop("dataset", None)
    return {name: value for name, value in config.items() if name not in EXECUTION_FIELDS}


# The entry of a checkpoint that names the run that saved it: the run's record (config.json), so that
# a checkpoint copied from another run's folder is refused by name of each difference (issue 25.3).
RUN_RECORD_KEY = "run_record"


class _NotRecorded:
    """A field that one record lacks (written by another latentmix version)."""

    def __repr__(self) -> str:
        return "not recorded"


_MISSING = _NotRecorded()


def _difference(name: str, saved: dict, new: dict) -> Optional[str]:
    old, now = saved.get(name, _MISSING), new.get(name, _MISSING)
    if old == now:
        return None
    if name.endswith("_sha256"):  # a digest says only "the content differs": show its start
        old, now = str(old)[:12], str(now)[:12]
    return f"{name} (was {old!r}, now {now!r})"


def _as_json(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, numpy scalars numbers), so that a
    fresh record compares equal to its saved copy."""
    from latentmix.io import _json_default

    return json.loads(json.dumps(value, default=_json_default))


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class RunTiming:
    """Wall time of a run over every process that trained it (timing.json): one segment per
    process (its epochs, seconds and device) and the seconds of each epoch's latest computation."""

    started: float  # time.perf_counter() when this process started the run
    first_epoch: int
    device: str
    earlier: list = field(default_factory=list)  # segments of the processes before this one
    epoch_time_s: dict = field(default_factory=dict)  # epoch -> seconds
    last_epoch: Optional[int] = None
    stopped: Optional[float] = None  # set by `stop`: the result and timing.json then report one time

    def epoch_done(self, epoch: int, seconds: float) -> None:
        self.epoch_time_s[epoch] = seconds
        self.last_epoch = epoch

    def stop(self) -> None:
        self.stopped = time.perf_counter()

    def _elapsed(self) -> float:
        return (self.stopped or time.perf_counter()) - self.started

    def segment(self) -> dict:
        epochs = None if self.last_epoch is None else [self.first_epoch, self.last_epoch]
        return {"epochs": epochs, "wall_time_s": round(self._elapsed(), 3), "device": self.device}

    def total_s(self) -> float:
        return sum(float(s["wall_time_s"]) for s in self.earlier) + self._elapsed()

    def epoch_times(self) -> list[float]:
        return [self.epoch_time_s[epoch] for epoch in sorted(self.epoch_time_s)]

    def to_dict(self) -> dict:
        return timing_document([*self.earlier, self.segment()], self.epoch_times())


# Summary keys that are timings: in timing.json, never in result.json.
TIMING_KEYS = ("wall_time_s", "epoch_time_s")


def timing_document(segments: list[dict], epoch_time_s: list[float]) -> dict:
    """timing.json: the total wall time, one segment per process, the seconds of each epoch."""
    return {"wall_time_s": round(sum(float(s["wall_time_s"]) for s in segments), 3), "segments": segments,
            "epoch_time_s": [round(float(seconds), 4) for seconds in epoch_time_s]}


def read_wall_time(run_dir: str | Path) -> Optional[float]:
    """A run folder's total wall time across resumes (timing.json), None when unknown."""
    try:
        return float(json.loads((Path(run_dir) / TIMING_NAME).read_text())["wall_time_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------------


class RunFolder:
    """One run's folder: accepts a command (new run, resume, overwrite) and owns every file in it
    (config.json, the verified checkpoint, metrics.csv, the selected model, result.json,
    label_issues.csv, timing.json). `writer` is False on the processes of a data-parallel run that
    only read the folder (every process but the first): they load the checkpoint and write
    nothing, so each write below is a no-op there."""

    def __init__(self, path: str | Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self.record: Optional[dict] = None  # the run's record, once `accept` took a command

    def file(self, name: str) -> Path:
        return self.path / name

    def present(self) -> list[str]:
        """The run files this folder holds (other files are the user's and never touched)."""
        return [name for name in RUN_FILES if self.file(name).exists()] if self.path.is_dir() else []

    # ---- accepting a command -----------------------------------------------------------------

    def check_command(self, *, resume: bool, overwrite: bool) -> None:
        """The checks that need no data or model, made before they load: resume and overwrite
        exclude each other, and a folder that holds a run needs one of them."""
        if resume and overwrite:
            raise ConfigError("--resume continues the run in the folder and --overwrite replaces it: pass only one")
        if not self.writer or resume or overwrite:
            return
        present = self.present()
        if present:
            if RESULT_NAME in present:  # nothing left to continue: --resume would change nothing
                raise ConfigError(f"{self.path} already holds a finished run ({', '.join(present)}); pass --overwrite "
                                  "to replace it (overwrite=True in Python), or use another --out")
            raise ConfigError(f"{self.path} already holds an unfinished run ({', '.join(present)}); pass --resume to "
                              "continue it or --overwrite to replace it (overwrite=True in Python), or use another --out")

    def accept(self, record: dict, *, resume: bool, overwrite: bool, device: torch.device,
               noisy_labels: torch.Tensor) -> Optional[dict]:
        """Accept the command whose run is `record` (config.json's content): check everything, then
        change the folder. Returns the checkpoint's state when it resumes one, else None.

        New run: config.json is written. Overwrite: the old run's files are removed first. Resume:
        the folder's record must match `record` (`record_differences`), the checkpoint its checksum
        and its labels the run's; config.json stays as first written, and an unfinished run's
        label_issues.csv (from `detect` at an earlier epoch) is removed, since it no longer
        describes the run."""
        import torch

        from latentmix.config_checks import check_out_outside_data
        self.check_command(resume=resume, overwrite=overwrite)
        record = _as_json(record)
        check_out_outside_data(self.path, (record.get("dataset_info") or {}).get("path"), name="run folder")
        holds_run = bool(self.present())
        if resume and self.writer and holds_run:
            self._check_same_run(record)
        state = None
        if resume and not self.file(CHECKPOINT_NAME).exists() and self._checksums().get("previous_sha256"):
            raise ConfigError(f"{self.file(CHECKPOINT_NAME)} is missing, but {CHECKSUM_NAME} records checkpoints of "
                              "several epochs: the resume would start again from epoch 1; put the checkpoint back, "
                              "or pass --overwrite to start afresh")
        if resume and self.file(CHECKPOINT_NAME).exists():
            state = self.load_checkpoint(device)
            if not torch.equal(state["noisy_labels"].to(noisy_labels.device), noisy_labels):
                raise ConfigError(f"{self.file(CHECKPOINT_NAME)} was written with other noisy labels than this run "
                                  "makes; resume with the run's data and labels, or pass --overwrite")
        self.record = self.saved_record() if resume and holds_run else record
        if not self.writer:
            return state
        self._remove_temporary_files()
        if overwrite:
            for name in self.present():
                self.file(name).unlink()
        if not (resume and holds_run):
            atomic_write_json(self.file(CONFIG_NAME), record)
        elif not self.file(RESULT_NAME).exists() and self.file(LABEL_ISSUES_NAME).exists():
            self.file(LABEL_ISSUES_NAME).unlink()
        return state

    def require_run(self) -> None:
        """For the commands that read a run (detect, predict): the folder exists and holds a run's
        record; else one error saying so, with the fix (a train run's --out), not train's options."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: no such run folder; give the --out folder of a latentmix train run")
        if not self.file(CONFIG_NAME).exists():
            raise ConfigError(f"{self.path} has no {CONFIG_NAME}: it is not a latentmix run folder; give the --out "
                              "folder of a latentmix train run")

    def _remove_temporary_files(self) -> None:
        """The temporary files of writes that a kill interrupted (`latentmix.io.atomic_write_bytes`
        names them ``.NAME.XXXX.tmp``): never renamed over their file, they hold nothing a run needs."""
        if not self.path.is_dir():
            return
        for name in RUN_FILES:
            for leftover in self.path.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)

    def saved_record(self) -> dict:
        """config.json, read; a missing or unreadable one is a clear error."""
        path = self.file(CONFIG_NAME)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.path} has no {CONFIG_NAME}: it is not a latentmix run folder, or its record was "
                              "lost; pass the --out of a train run (or --overwrite to start a new run there)") from None
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path} is unreadable ({type(error).__name__}); restore it, or pass --overwrite to "
                              "start the run afresh") from None
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise ConfigError(f"{path} has no 'config' entry: not a run record; pass --overwrite to start afresh")
        return record

    def _check_same_run(self, record: dict) -> None:
        differences = record_differences(self.saved_record(), record)
        if differences:
            raise ConfigError(f"cannot resume {self.path}: it holds a run with other settings: "
                              f"{'; '.join(differences)}; resume with the run's settings, pass --overwrite to replace "
                              "it, or use another --out")

    # ---- the checkpoint ----------------------------------------------------------------------

    def save_checkpoint(self, state: dict) -> None:
        """Write checkpoint.pt and its sha256 (checkpoint.json), each atomically.

        The checksum file is written first and keeps the digest of the checkpoint it replaces, so
        that a process killed between the two writes leaves a pair that still verifies (the old
        checkpoint, named as "previous"). That digest is computed from the file on disk, not copied
        from checkpoint.json: after a kill between the two writes, checkpoint.json names a
        checkpoint that was never written, and a second kill at the same point of the resumed run
        would otherwise leave a checksum file that names neither the file on disk nor its
        predecessor (issue 25.2)."""
        import torch

        if not self.writer:
            return
        record = self.record if self.record is not None else self._record_if_any()
        if record is not None:
            state = {**state, RUN_RECORD_KEY: record}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        previous = _file_sha256(self.file(CHECKPOINT_NAME))
        atomic_write_json(self.file(CHECKSUM_NAME), {"file": CHECKPOINT_NAME, "sha256": hashlib.sha256(data).hexdigest(),
                                                      "previous_sha256": previous})
        atomic_write_bytes(self.file(CHECKPOINT_NAME), data)

    def load_checkpoint(self, device: "torch.device | str" = "cpu") -> dict:
        """The checkpoint's state, after its bytes matched the recorded sha256; loaded with
        `weights_only=True` (plain tensors and containers, no code)."""
        import torch

        path = self.file(CHECKPOINT_NAME)
        data = path.read_bytes()
        checksums = self._checksums()
        if not checksums:
            if self.file(CHECKSUM_NAME).exists():
                raise ConfigError(f"{self.file(CHECKSUM_NAME)} is damaged (not the JSON latentmix writes), so {path} "
                                  "cannot be verified; restore it, or pass --overwrite to start the run afresh")
            raise ConfigError(f"{path} has no checksum file {CHECKSUM_NAME} (written by an older latentmix, or lost), "
                              "so it cannot be verified; pass --overwrite to start the run afresh")
        if hashlib.sha256(data).hexdigest() not in (checksums.get("sha256"), checksums.get("previous_sha256")):
            raise ConfigError(f"{path} is corrupt: its sha256 differs from the one in {CHECKSUM_NAME} (damaged on disk "
                              "or in a copy); restore it, or pass --overwrite to start the run afresh")
        try:
            state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise ConfigError(f"checkpoint {path} is unreadable or corrupt ({type(error).__name__}); "
                              "pass --overwrite to start the run afresh") from None
        if not isinstance(state, dict):
            raise ConfigError(f"checkpoint {path} holds a {type(state).__name__}, not a latentmix checkpoint; "
                              "pass --overwrite to start the run afresh")
        self._check_checkpoint_run(state)
        return state

    def _record_if_any(self) -> Optional[dict]:
        """config.json's record, or None when the folder has none (a checkpoint written on its own)."""
        return self.saved_record() if self.file(CONFIG_NAME).exists() else None

    def _check_checkpoint_run(self, state: dict) -> None:
        """The checkpoint was saved by the run config.json records: a checkpoint copied from another
        run's folder (other seed, epochs, data) would otherwise continue under this run's name.
        A checkpoint without a record (an older latentmix) is taken as it is."""
        saved = state.get(RUN_RECORD_KEY)
        folder_record = self._record_if_any()
        if not isinstance(saved, dict) or folder_record is None:
            return
        differences = record_differences(folder_record, saved)
        if differences:
            raise ConfigError(f"{self.file(CHECKPOINT_NAME)} was saved by another run than {self.file(CONFIG_NAME)} "
                              f"records ({'; '.join(differences)}: 'was' is this folder's run, 'now' the "
                              "checkpoint's); put back this run's checkpoint, or pass --overwrite to start afresh")

    def _checksums(self) -> dict:
        try:
            value = json.loads(self.file(CHECKSUM_NAME).read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    # ---- timing ------------------------------------------------------------------------------

    def start_timing(self, first_epoch: int, started: float, device: str) -> RunTiming:
        """This process's timing, continuing the segments and epoch times of timing.json (epochs
        from `first_epoch` on are recomputed now, so their old times are dropped)."""
        timing = RunTiming(started=started, first_epoch=first_epoch, device=device)
        try:
            saved = json.loads(self.file(TIMING_NAME).read_text())
            timing.earlier = [dict(s) for s in saved["segments"]]
            timing.epoch_time_s = {epoch: float(seconds) for epoch, seconds in enumerate(saved["epoch_time_s"], start=1)
                                   if epoch < first_epoch}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a new run, or an unreadable file: the time of earlier processes is unknown
        return timing

    def write_timing(self, timing: RunTiming | dict) -> None:
        """timing.json from this process's `RunTiming`, or a finished `timing_document` (a
        vectorized population's share of its wall time)."""
        if self.writer:
            atomic_write_json(self.file(TIMING_NAME), timing.to_dict() if isinstance(timing, RunTiming) else timing)

    # ---- the run's record of a vectorized population -----------------------------------------

    def write_population_record(self, config: dict, trained_as: str) -> None:
        """config.json of a run trained in a vectorized population (`latentmix.sweep.worker`): its
        settings and how it was trained. The sweep store's claim, not `accept`, gave the run this
        folder (a retry of it resumes through `train`, which compares these settings)."""
        if self.writer:
            atomic_write_json(self.file(CONFIG_NAME), {"config": config, "trained_as": trained_as})

    # ---- per epoch and at the end ------------------------------------------------------------

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.csv: one row per epoch so far (`metric_fields`)."""
        if self.writer:
            atomic_write_csv(self.file(METRICS_NAME), rows, metric_fields(rows))

    def save_selected(self, model_state: dict) -> None:
        """selected_model.pt: the model's weights at the epoch a user would keep."""
        if self.writer:
            atomic_torch_save(self.file(SELECTED_NAME), model_state)

    def load_selected(self, device: "torch.device | str" = "cpu") -> Optional[dict]:
        """The weights of selected_model.pt, or None when the run has not selected an epoch yet."""
        import torch

        path = self.file(SELECTED_NAME)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - truncated, damaged or not a weights file: one meaning
            raise ConfigError(f"{path} is unreadable or corrupt ({type(error).__name__}); delete it to resume (the "
                              "next selected epoch writes it again), or pass --overwrite") from None
        if not isinstance(state, dict):
            raise ConfigError(f"{path} holds a {type(state).__name__}, not model weights; delete it to resume, or pass "
                              "--overwrite")
        return state

    def write_label_issues(self, result: Any) -> Path:
        """label_issues.csv from a result's per-sample arrays (`write_label_issues`); its path."""
        path = self.file(LABEL_ISSUES_NAME)
        if self.writer:
            write_label_issues(path, result)
        return path

    def write_result(self, summary: dict) -> None:
        """result.json: the run's summary without its timings (those are timing.json's), so that
        same-seed runs write the same file."""
        if self.writer:
            atomic_write_json(self.file(RESULT_NAME), {k: v for k, v in summary.items() if k not in TIMING_KEYS})

    def read_result(self) -> Optional[dict]:
        """The summary in result.json; None when the run has not finished, or when the file cannot
        be read or holds text where a number belongs (a half-written one cannot exist, but a
        hand-edited one can: a caller that must tell the two apart checks
        `file(RESULT_NAME).exists()`)."""
        from latentmix.summary import NUMBER_KEYS

        try:
            summary = json.loads(self.file(RESULT_NAME).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(summary, dict):
            return None
        numbers_ok = all(summary.get(key) is None or (isinstance(summary[key], (int, float))
                                                      and not isinstance(summary[key], bool)) for key in NUMBER_KEYS)
        return summary if numbers_ok else None  # a hand-edited value ("high") is damage, not a number


def _file_sha256(path: Path) -> Optional[str]:
    """The sha256 of a file's bytes, read in 1 MiB blocks; None when there is no such file."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# What a checkpoint holds besides tensors (label_issues.csv: `latentmix.label_issues`)
# --------------------------------------------------------------------------------------------


def noise_model_entry(noise_model: Any) -> Optional[dict]:
    """A fitted noise model as the checkpoint keeps it: ``{"kind", "state"}`` (None: none fitted)."""
    return None if noise_model is None else {"kind": noise_model.kind, "state": noise_model.state_dict()}


def noise_model_of(checkpoint: dict) -> Any:
    """The noise model a checkpoint keeps (`noise_model_entry`), rebuilt; None when it has none."""
    from latentmix.noise_model import noise_model_from_state_dict

    entry = checkpoint.get("noise_model")
    return None if entry is None else noise_model_from_state_dict(entry["state"])
