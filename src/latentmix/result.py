"""What a run leaves behind (`RunResult`): accuracy best / last / selected, the per-epoch metrics,
each training sample's P(noisy), loss and prediction, and the detection figures when the wrong
labels are known. `RunResult.run_summary` is the run's result.json (`latentmix.summary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from latentmix.config import RunConfig
from latentmix.data import Dataset
from latentmix.methods import Method
from latentmix.mixing import format_layers
from latentmix.noise import NoisyLabels
from latentmix.noise_model import detection_metrics
from latentmix.selection import flagged_confusion, ranking_order
from latentmix.plain_twin import KEPT_TWIN
from latentmix.summary import POPULATION_KEYS, TEST_KEYS, TRAINER_KEYS, TWIN_KEYS, RunSummary


@dataclass
class RunResult:
    """What a run leaves behind: summary figures, per-epoch metrics and per-sample P(noisy).

    Accuracy comes three ways: `best_val_acc` (the maximum over epochs, the paper's oracle "best":
    it needs the clean test labels to pick), `last_val_acc`, and `selected_val_acc`: the accuracy
    at the epoch a user would keep, picked by accuracy on the noisy validation split
    (`selected_epoch`; None when the run has none). The per-sample arrays (`p_noisy`, `losses`,
    `predictions`, over the N training samples) come from `label_issues_epoch`, the epoch whose
    noise model separates the losses best (`latentmix.selection.separation`)."""

    config: RunConfig
    method: Method
    metrics: list[dict]
    best_val_acc: float
    last_val_acc: float
    best_epoch: int
    p_noisy: np.ndarray
    predictions: np.ndarray
    noisy_labels: np.ndarray
    is_noisy: Optional[np.ndarray]
    run_dir: Optional[Path] = None
    model: Optional[nn.Module] = None
    # Timings (also in the run folder's timing.json) stay out of `summary()` and the metrics rows,
    # so that same-seed runs give byte-identical result files.
    wall_time_s: float = 0.0  # across every process that trained the run
    epoch_time_s: list[float] = field(default_factory=list)
    selected_val_acc: Optional[float] = None
    selected_epoch: Optional[int] = None
    losses: Optional[np.ndarray] = None
    label_issues_epoch: Optional[int] = None
    # the first epoch of the mean P(noisy) the label issues rank by (`latentmix.run_log.RunLog`)
    label_issues_from_epoch: Optional[int] = None
    estimated_noise_rate: Optional[float] = None
    bootstrap_start_epoch: Optional[int] = None
    num_classes: Optional[int] = None
    sample_rows: Optional[np.ndarray] = None  # (N,) row in the user's file of each training sample
    holdout: Optional[np.ndarray] = None  # (N,) bool, held out for selection (not trained on)
    extra_rows: Optional[dict] = None  # validation rows of the user's file, scored the same way
    selected_model_state: Optional[dict] = None  # the model's weights at `selected_epoch`
    clean_labels: Optional[np.ndarray] = None  # (N,) when known
    sample_names: Optional[Sequence[str]] = None  # a name per row of the user's data (an image folder: file paths)
    trained_as: Optional[str] = None  # "population of N" for a run of the vectorized population, else None
    bootstrap_start_reason: Optional[str] = None  # why bootstrapping started when it did
    correction_kept: Optional[bool] = None  # False: the correction did not beat its warm-up (the guard)
    correction_stopped: Optional[str] = None  # why the correction stopped before the end (it collapsed its network)
    noise_estimate_doubt: Optional[str] = None  # why the estimated noise rate cannot be trusted; None: no doubt
    training_note: Optional[str] = None  # a run that never learnt (accuracy at chance), and the likely cause
    # accuracy on the data's test set (None: it has none), which selects nothing: at `selected_epoch`,
    # the maximum over epochs, the last epoch's (`test_figures`)
    selected_test_acc: Optional[float] = None
    best_test_acc: Optional[float] = None
    last_test_acc: Optional[float] = None
    # a run with a plain CE twin (`latentmix.plain_twin`): the twin's result, which model the run
    # keeps ("run" or "plain-twin"), and the selection signal of each at its selected epoch
    twin: Optional["RunResult"] = None
    kept_model: Optional[str] = None
    selection_score: Optional[float] = None
    twin_selection_score: Optional[float] = None
    twin_failed: Optional[str] = None  # why the twin could not be compared (it diverged); None: it was
    twin_label_issues_epoch: Optional[int] = None  # the twin's epoch whose P(noisy) the label issues average in

    @property
    def kept(self) -> "RunResult":
        """The result whose selected model the run keeps: its twin's when the twin won, else its own."""
        return self.twin if self.twin is not None and self.kept_model == KEPT_TWIN else self

    def run_summary(self) -> RunSummary:
        """The run's summary (`latentmix.summary.RunSummary`), as its result.json holds it: the
        one place a summary is made, for the sequential trainer's runs and the population's. A
        population run (`trained_as`) measures less (no held-out selection, no per-epoch noise
        model, no bootstrapping) and its file carries `POPULATION_KEYS`; its detection figures are
        those of its final noise model, which the population writes into its last metrics row."""
        last = self.metrics[-1] if self.metrics else {}
        population = self.trained_as is not None
        if population:
            detection = {key: last.get(f"detection_{key}") for key in ("auc", "precision", "recall")}
            confusion: dict = {}
        else:
            detection, confusion = self.detection(), self.noise_confusion()
        values = dict(
            method=self.method.name, mix_layers=format_layers(self.method.mix_layers),
            correction=self.method.correction, dataset=self.config.dataset, noise=self.config.noise,
            noise_kind=self.config.noise_kind, seed=self.config.seed, epochs=len(self.metrics),
            best_val_acc=self.best_val_acc, last_val_acc=self.last_val_acc, best_epoch=self.best_epoch,
            selected_val_acc=self.selected_val_acc, selected_epoch=self.selected_epoch,
            bootstrap_start_epoch=self.bootstrap_start_epoch, last_train_acc_noisy=last.get("train_acc_noisy"),
            last_train_acc_clean=last.get("train_acc_clean"), label_issues_epoch=self.label_issues_epoch,
            label_issues_from_epoch=self.label_issues_from_epoch, detection_auc=detection.get("auc"),
            detection_precision=detection.get("precision"), detection_recall=detection.get("recall"),
            estimated_noise_rate=self.estimated_noise_rate,
            # epochs whose noise model found no two groups of losses (the same P(noisy) for all)
            noise_model_collapsed_epochs=sum(1 for row in self.metrics if row.get("separation") == 0.0),
            actual_noise_rate=float(self.is_noisy.mean()) if self.is_noisy is not None else None,
            bootstrap_start_reason=self.bootstrap_start_reason, correction_kept=self.correction_kept,
            correction_stopped=self.correction_stopped,
            noise_estimate_doubt=self.noise_estimate_doubt, training_note=self.training_note,
            trained_as=self.trained_as, selected_test_acc=self.selected_test_acc, best_test_acc=self.best_test_acc,
            last_test_acc=self.last_test_acc, **confusion,
        )
        tested = TEST_KEYS if self.last_test_acc is not None else ()  # a run without a test set: its file as always
        twinned = ()
        if self.kept_model is not None:  # a run with a plain CE twin: the model it keeps, and why
            kept = self.kept
            values.update(kept_model=self.kept_model, selection_score=self.selection_score,
                          twin_selection_score=self.twin_selection_score, kept_val_acc=kept.selected_val_acc,
                          kept_epoch=kept.selected_epoch, kept_test_acc=kept.selected_test_acc,
                          twin_failed=self.twin_failed, twin_label_issues_epoch=self.twin_label_issues_epoch)
            twinned = TWIN_KEYS + (("kept_test_acc",) if tested else ())
        keys = POPULATION_KEYS if population else TRAINER_KEYS + tested + twinned + tuple(confusion)
        return RunSummary(**{key: value for key, value in values.items() if key in keys}, keys=keys)

    def summary(self) -> dict:
        """`run_summary()` as the plain dict result.json holds."""
        return self.run_summary().to_dict()

    def selection_sets(self) -> Optional[tuple[str, str]]:
        """(the set that picked `selected_epoch`, the set the accuracy reported for it is measured
        on), in words, or None when the run selects no epoch. A noisy held-out split of the training
        labels selects when there is one, else the user's validation set; a test set scores when
        there is one, else the validation set: then, without a held-out split, the one set both
        picked the epoch and scored it, and the figure reads high (it was chosen for being high)."""
        if self.selected_epoch is None or self.trained_as is not None:
            return None
        if self.holdout is not None:
            selecting = "the noisy held-out split"
        elif self.extra_rows is not None:  # the validation rows are a split of the user's file (--val-split)
            # a file with clean labels (a clean_label column, clean_labels arrays) scores its split against them
            clean = "truly_noisy" in self.extra_rows
            selecting = f"a validation split of your file ({'its clean labels' if clean else 'its labels as given'})"
        else:
            selecting = "your validation set"
        if self.selected_test_acc is not None:
            return selecting, "your test set"
        return selecting, "the validation set" if self.holdout is not None else selecting

    def _scored(self) -> np.ndarray:
        """Positions of the training samples the noise model was fitted on (held-out ones excluded)."""
        return np.flatnonzero(~self.holdout) if self.holdout is not None else np.arange(len(self.p_noisy))

    def detection(self) -> dict:
        """Detection AUC / precision / recall of `p_noisy` against the true mask (when known)."""
        if self.is_noisy is None or not len(self.p_noisy):
            return {}
        scored = self._scored()
        if not self.is_noisy[scored].any() or self.is_noisy[scored].all():
            return {}
        # the AUC of the ranking a user reads (ties of P(noisy) broken by the loss); precision and
        # recall of the flagged set P(noisy) > 0.5
        p_noisy, truth = self.p_noisy[scored], self.is_noisy[scored]
        rank_score = np.empty(len(scored))
        order = ranking_order(p_noisy, self.losses[scored]) if self.losses is not None else np.argsort(-p_noisy, kind="stable")
        rank_score[order] = -np.arange(len(scored), dtype=float)
        metrics = detection_metrics(p_noisy, truth)
        metrics["auc"] = detection_metrics(rank_score, truth)["auc"]
        return metrics

    def noise_confusion(self, top: int = 10) -> dict:
        """The most frequent (given class -> predicted class) pairs among the labels flagged noisy
        (P(noisy) > 0.5), and, when clean labels are known, the true (given -> clean) pairs of the
        wrong labels: which classes the noise comes from and goes to."""
        if self.num_classes is None or not len(self.p_noisy):
            return {}
        scored = self._scored()
        flagged = scored[self.p_noisy[scored] > 0.5]
        pairs = {"flagged_noise_pairs": _top_pairs(flagged_confusion(
            self.noisy_labels, self.predictions, flagged, self.num_classes), top)}
        if self.clean_labels is not None and self.is_noisy is not None:
            wrong = scored[self.is_noisy[scored]]
            pairs["true_noise_pairs"] = _top_pairs(flagged_confusion(
                self.noisy_labels, self.clean_labels, wrong, self.num_classes), top)
        return pairs


def test_figures(metrics: list[dict], selected: Optional[int]) -> dict:
    """`selected_test_acc` (at the `selected` epoch), `best_test_acc` (the maximum) and
    `last_test_acc` from the metric rows' `test_acc`; empty when the rows have none (no test set)."""
    scores = {int(row["epoch"]): row["test_acc"] for row in metrics if row.get("test_acc") is not None}
    if not scores:
        return {}
    return {"selected_test_acc": scores.get(selected), "best_test_acc": max(scores.values()),
            "last_test_acc": scores.get(int(metrics[-1]["epoch"]))}


def _top_pairs(counts: list[list[int]], top: int) -> list[list[int]]:
    """The `top` largest off-diagonal cells of a confusion matrix as [given, other, count] rows."""
    cells = [(n, i, j) for i, row in enumerate(counts) for j, n in enumerate(row) if i != j and n > 0]
    return [[i, j, n] for n, i, j in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))[:top]]


def per_sample_results(view: dict, dataset: Dataset, labels: NoisyLabels, holdout: np.ndarray) -> dict:
    """The per-sample fields of a `RunResult` from the view kept for the label issues (see
    `epoch_view`): P(noisy), loss and prediction of every training sample, the samples' rows in the
    user's file, which were held out, and the validation rows of the user's file scored the same
    way. Shared by `train` and `latentmix detect` (which rebuilds them from a checkpoint)."""
    clean_known = dataset.train_labels_clean
    noisy = labels.labels.cpu().numpy()
    fields_ = {
        "p_noisy": _numpy(view["p_noisy"]), "losses": _numpy(view["losses"]), "predictions": _numpy(view["predictions"]),
        "noisy_labels": noisy, "is_noisy": labels.is_noisy.cpu().numpy() if clean_known else None,
        "clean_labels": dataset.train_labels.cpu().numpy() if clean_known else None, "num_classes": dataset.num_classes,
        "sample_rows": dataset.train_rows.cpu().numpy() if dataset.train_rows is not None else None,
        "holdout": np.isin(np.arange(len(noisy)), holdout) if len(holdout) else None, "extra_rows": None,
        "sample_names": dataset.sample_names,
    }
    if view.get("val_losses") is not None:
        given = dataset.val_given_labels.cpu().numpy()
        extra = {"index": dataset.val_rows.cpu().numpy() if dataset.val_rows is not None else np.arange(len(given)),
                 "split": np.full(len(given), "val"), "given_label": given, "p_noisy": _numpy(view["val_p_noisy"]),
                 "loss": _numpy(view["val_losses"]), "predicted_label": _numpy(view["val_predictions"])}
        if clean_known:
            extra["truly_noisy"] = (given != dataset.val_labels.cpu().numpy()).astype(int)
        fields_["extra_rows"] = extra
    return fields_


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
