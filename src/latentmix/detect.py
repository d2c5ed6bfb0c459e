"""`latentmix detect RUN_DIR`: which training labels of a trained run are likely wrong.

A finished run already wrote `label_issues.csv`. It is used as it is only when it matches the run
(one row per training sample, each index once, the expected columns, with the `file` column of a
run on an image folder), so a finished run needs neither its data nor a writable folder; otherwise, and for a run
that was stopped before it finished, it is rebuilt from the run's `config.json` and its verified
last checkpoint: the per-sample losses of the run's last tracking pass (kept in the checkpoint;
for a checkpoint without one, one eval-mode pass over the training set) get a fresh noise model,
and the samples are ranked by P(noisy), as `train` ranks them at the end of a run. A checkpoint
keeps the per-sample view that `train` writes the label issues from, so a finished run's file is
rebuilt as it was; a run whose label issues average its noise model with its plain CE twin's
(`latentmix.plain_twin`) is rebuilt from both folders' checkpoints.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import torch

from latentmix.data import DATASETS
from latentmix.errors import ConfigError
from latentmix.run_folder import CHECKPOINT_NAME, LABEL_ISSUES_NAME, RunFolder, run_fingerprints
from latentmix.config import RunConfig
from latentmix.plain_twin import TWIN_FOLDER, with_twin_label_issues
from latentmix.result import per_sample_results, RunResult
from latentmix.run_setup import build_run, RunSetup
from latentmix.tracking import epoch_view, fit_run_noise_model, track_training_losses, Tracked

LABEL_ISSUES_FIELDS = ["index", "split", "given_label", "p_noisy", "loss", "predicted_label"]  # + "truly_noisy" when known


def label_issues_for(run_dir: str | Path) -> Path:
    """``RUN_DIR/label_issues.csv``, rebuilt from the checkpoint when it is missing or does not
    match the run; a mismatch that no checkpoint can repair is a clear error."""
    folder = RunFolder(run_dir)
    folder.require_run()
    record = folder.saved_record()
    path = folder.file(LABEL_ISSUES_NAME)
    problem = label_issues_problem(path, record.get("num_label_issue_rows"))
    if problem is None:
        return path
    if not folder.file(CHECKPOINT_NAME).exists():
        raise ConfigError(f"{path} {problem}, and {folder.path} has no {CHECKPOINT_NAME} to rebuild it from (the run "
                          "never finished an epoch, or ran without checkpoints); train it again with --overwrite")
    config = record.get("config") or {}
    source = (record.get("dataset_info") or {}).get("source")
    if source in ("tensors", "dataset") or (
            not config.get("data") and str(config.get("dataset", "")).strip().lower() not in DATASETS):
        raise ConfigError(f"{path} {problem}, and the run trained on data given in Python (fit(), data set "
                          f"{config.get('dataset')!r}), which detect cannot load to rebuild it; call fit() again with "
                          "run_dir=... to write it")
    return detect_from_checkpoint(folder.path)


def label_issues_problem(path: Path, num_rows: Optional[int]) -> Optional[str]:
    """What is wrong with a label_issues.csv that should list `num_rows` samples (every training
    sample, and the validation rows of a user's file split into the two; None: unknown, then the
    rows must cover indices 0..rows-1), or None when it matches."""
    if not path.exists():
        return "is missing"
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return f"is unreadable ({type(error).__name__})"
    if _without_file_column(columns) not in (LABEL_ISSUES_FIELDS, LABEL_ISSUES_FIELDS + ["truly_noisy"]):
        return (f"has columns {columns or 'none'}, expected index[, file], {', '.join(LABEL_ISSUES_FIELDS[1:])}"
                "[, truly_noisy]")
    if columns and "file" in columns and any(not row["file"] for row in rows):
        return "has a row without its file name"
    try:
        indices = sorted(int(row["index"]) for row in rows)
        for row in rows:
            int(row["given_label"]), int(row["predicted_label"]), float(row["loss"])
            if not 0.0 <= float(row["p_noisy"]) <= 1.0:
                return f"has P(noisy) {row['p_noisy']} outside [0, 1]"
    except (TypeError, ValueError):
        return "has a row that is not numbers"
    expected = len(rows) if num_rows is None else num_rows
    if indices != list(range(expected)):
        return f"has {len(rows)} rows ({len(set(indices))} distinct indices) for a run that scores {expected} samples"
    return None


def _without_file_column(columns: Optional[list[str]]) -> Optional[list[str]]:
    """The columns of a label_issues.csv without `file`, the second column of a run whose data name
    their rows (an image folder: each image's path, `latentmix.label_issues.write_label_issues`)."""
    if columns and len(columns) > 1 and columns[1] == "file":
        return [columns[0], *columns[2:]]
    return columns


def detect_from_checkpoint(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/label_issues.csv`` from the run's last checkpoint; returns its path.

    The run is set up as `train` set it up (`build_run`: the data, a ``--data`` file with its
    ``--noisy-labels`` file, the labels and the noisy-validation split), and must be the one that
    trained: same content fingerprint of the data, same labels as the checkpoint's."""
    folder = RunFolder(run_dir)
    record = folder.saved_record()
    checkpoint_path = folder.file(CHECKPOINT_NAME)
    if not checkpoint_path.exists():
        raise ConfigError(f"{folder.path} has neither {LABEL_ISSUES_NAME} nor {CHECKPOINT_NAME}: the run never finished "
                          "an epoch, or ran without checkpoints; train it (again) first")
    state = folder.load_checkpoint("cpu")  # verified first: a damaged file fails before the data load
    setup = build_run(RunConfig.from_dict(record["config"]))
    noisy = state["noisy_labels"]
    saved_data = record.get("data_sha256")
    if not torch.equal(setup.labels.labels, noisy) or (
            saved_data is not None and run_fingerprints(setup.dataset, noisy)["data_sha256"] != saved_data):
        raise ConfigError(f"the data or labels that {folder.path / 'config.json'} names differ from those the run "
                          "trained on (the files changed?); restore them to rebuild its label issues")
    view = state.get("label_snapshot")
    if view is None:  # the run's last tracking pass, with a fresh noise model
        tracked = _last_tracking_pass(state, setup, checkpoint_path)
        view = epoch_view(tracked, fit_run_noise_model(setup.config, tracked.losses[setup.trained]), setup.trained, None)

    def labels_of(sample_view: dict) -> RunResult:  # the per-sample part of a result, for the label issues
        return RunResult(config=setup.config, method=setup.method, metrics=[], best_val_acc=float("nan"),
                         last_val_acc=float("nan"), best_epoch=0,
                         **per_sample_results(sample_view, setup.dataset, setup.labels, setup.holdout))

    result = labels_of(view)
    twin_view = _twin_label_view(folder)
    if twin_view is not None:  # the label issues of a run with a plain CE twin average both noise models
        with_twin_label_issues(result, labels_of(twin_view))
    try:
        return folder.write_label_issues(result)
    except OSError as error:
        raise ConfigError(f"cannot write {folder.file(LABEL_ISSUES_NAME)} ({error.strerror or type(error).__name__}): "
                          "detect rebuilds it in the run folder; copy the run folder to a place you can write to, "
                          "and run detect on the copy") from None


def _twin_label_view(folder: RunFolder) -> Optional[dict]:
    """The per-sample view of the run's plain CE twin that its label issues were averaged with
    (`latentmix.plain_twin.with_twin_label_issues`), from the twin's verified checkpoint; None for a
    run whose result.json names no such twin (none was trained, it failed, or the run is unfinished:
    its label issues are then its own)."""
    record = folder.read_result() or {}
    if record.get("twin_label_issues_epoch") is None:
        return None
    twin = RunFolder(folder.path / TWIN_FOLDER)
    if not twin.file(CHECKPOINT_NAME).exists():
        raise ConfigError(f"{folder.path}'s label issues average its noise model with its plain CE twin's, and "
                          f"{twin.path} has no {CHECKPOINT_NAME} to rebuild the twin's part from; train the run "
                          "again with --overwrite")
    view = twin.load_checkpoint("cpu").get("label_snapshot")
    if view is None:
        raise ConfigError(f"{twin.file(CHECKPOINT_NAME)} keeps no label view to rebuild the label issues from "
                          "(a checkpoint of an older version); train the run again with --overwrite")
    return view


def _last_tracking_pass(state: dict, setup: RunSetup, checkpoint_path: Path) -> Tracked:
    """The run's own last tracking pass when the checkpoint keeps it (then a finished run's file is
    rebuilt byte for byte), else one eval-mode pass of the checkpoint's model."""
    if state.get("tracked") is not None:
        return Tracked(state["tracked"]["losses"].float(), state["tracked"]["logits"].float())
    from latentmix.models.small import match_saved_widths

    match_saved_widths(setup.model, state["model"])  # a token model saved before it had widths 1 and 3
    try:
        setup.model.load_state_dict(state["model"])
    except RuntimeError:
        raise ConfigError(f"{checkpoint_path} does not fit the model its config builds; the code or settings "
                          "changed since the run") from None
    # the run's own tracking pass: its transform (`--track-transform`, as `train` tracks) in eval mode
    return track_training_losses(setup.model, setup.dataset.train_inputs, setup.labels.labels,
                                 setup.placed.track_transform, setup.protocol.eval_batch_size)


def class_names(run_dir: str | Path) -> Optional[list[str]]:
    """The class names a run's data gave (an image folder's sub-folders, in class-id order), from
    its config.json; None where the classes are ids only."""
    names = (RunFolder(run_dir).saved_record().get("dataset_info") or {}).get("classes")
    return [str(name) for name in names] if isinstance(names, list) else None


def describe_issue(row: dict, classes: Optional[list[str]]) -> str:
    """One row of label_issues.csv as `latentmix detect` prints it: the file (an image folder's
    path) or the row of the user's data, its split when not a training row, the given and the
    predicted class (with their names where the data named them), P(noisy), the loss and, when
    known, whether the label is truly wrong."""
    def label(value: str) -> str:
        if classes is not None and value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
            return f"{classes[int(value)]} ({value})"
        return value

    split = row.get("split")
    place = f"row {row['index']}" + (f", {split}" if split not in (None, "train") else "")
    where = f"{row['file']} ({place})" if row.get("file") else (
        f"row {row['index']}" + (f" ({split})" if split not in (None, "train") else ""))
    loss = f", loss {float(row['loss']):.3f}" if row.get("loss") else ""
    extra = f", truly noisy {row['truly_noisy']}" if "truly_noisy" in row else ""
    return (f"{where}: given {label(row['given_label'])}, predicted {label(row['predicted_label'])}, "
            f"P(noisy) {float(row['p_noisy']):.3f}{loss}{extra}")


def check_detect_args(top: int, threshold: float) -> None:
    """`detect --top N --threshold P`: N >= 0 rows to print, P a probability."""
    import math

    if top < 0:
        raise ConfigError(f"--top must be >= 0 (how many labels to print), got {top}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"--threshold must be a probability in [0, 1], got {threshold}")
