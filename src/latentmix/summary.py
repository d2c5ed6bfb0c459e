"""One run's summary: the figures a run folder's result.json holds, typed.

Every path that finishes a run makes a `RunSummary`: the sequential trainer
(`latentmix.result.RunResult.run_summary`) and the vectorized population
(`latentmix.population.train_population`). Everything that reads a finished run reads one: the
sweep store (`latentmix.sweep.worker`, one trial attribute per run), `latentmix report` (from
result.json or the store) and the summary `latentmix train` prints.

The file is the contract: `to_dict()` writes, key for key and in the same order, the result.json
that runs have always written, and `from_dict()` reads any such file back (older versions' files
included), so that `RunSummary.from_dict(d).to_dict() == d`. Two kinds of runs write different
keys: a population run measures less (no held-out split, no per-epoch noise model, no
bootstrapping) and its file leaves those keys out rather than writing null; `keys` records which
keys a summary carries. Timings never belong here (timing.json holds them), so that same-seed runs
give byte-identical result files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

# The keys of the sequential trainer's result.json, in file order; the two noise-pair lists follow
# when the run knows its number of classes.
TRAINER_KEYS = (
    "method", "mix_layers", "correction", "dataset", "noise", "noise_kind", "seed", "epochs", "val_labels",
    "best_val_acc", "last_val_acc", "best_epoch", "selected_val_acc", "selected_epoch", "bootstrap_start_epoch",
    "last_train_acc_noisy", "last_train_acc_clean", "label_issues_epoch", "label_issues_from_epoch", "detection_auc",
    "detection_precision", "detection_recall", "estimated_noise_rate", "noise_model_collapsed_epochs", "actual_noise_rate",
    "bootstrap_start_reason", "correction_kept", "correction_stopped", "noise_estimate_doubt", "training_note",
)
NOISE_PAIR_KEYS = ("flagged_noise_pairs", "true_noise_pairs")
# The keys a run with a test set adds (a file's test_* arrays, an image folder's test/): its accuracy
# on that set, which selects nothing, at the selected epoch, its maximum and its last epoch's.
TEST_KEYS = ("selected_test_acc", "best_test_acc", "last_test_acc")
# The keys a run with a plain CE twin adds (`latentmix.plain_twin`; `kept_test_acc` too with a test
# set): which model it keeps, the two selection signals that decided, and the kept model's figures.
# The label issues then average the run's and the twin's noise models: `twin_label_issues_epoch` is
# the twin's epoch that took part (None: the twin failed, and the label issues are the run's own).
TWIN_KEYS = ("kept_model", "selection_score", "twin_selection_score", "kept_val_acc", "kept_epoch", "twin_failed",
             "twin_label_issues_epoch")
# The keys of a population run's result.json: what it measures, and how it was trained.
POPULATION_KEYS = (
    "method", "mix_layers", "correction", "dataset", "noise", "noise_kind", "seed", "epochs",
    "best_val_acc", "last_val_acc", "best_epoch", "last_train_acc_noisy", "last_train_acc_clean",
    "detection_auc", "detection_precision", "detection_recall", "actual_noise_rate", "trained_as",
)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The figures of one finished run. Accuracies are fractions in [0, 1]; epochs are 1-based.

    Every figure may be None: not measurable for this run (no noisy labels: no detection AUC), or
    absent from the file it was read from (a file of another version). `keys` says which keys the
    summary carries (its result.json's, in order); `extra` keeps keys of such a file that this
    version does not know (older files held ``wall_time_s``), so reading and writing keep them."""

    method: Optional[str] = None  # the resolved method's name, e.g. "lr-m(1-2)"
    mix_layers: Optional[str] = None  # "1-2", "0-0", "none"
    correction: Optional[str] = None  # "none", "soft", "hard"
    dataset: Optional[str] = None
    noise: Optional[float] = None  # the synthetic noise rate asked for
    noise_kind: Optional[str] = None  # "symmetric" or "asymmetric"
    seed: Optional[int] = None
    epochs: Optional[int] = None  # epochs trained
    # what the *_val_acc figures are measured against: "clean" labels (a data set's test labels, a
    # file's clean_labels), or the labels as "given" (a user's file without a clean reference: its
    # validation rows may be as wrong as its training labels). Derived from actual_noise_rate.
    val_labels: Optional[str] = None
    best_val_acc: Optional[float] = None  # the maximum over epochs (an oracle: needs clean labels to pick)
    last_val_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    selected_val_acc: Optional[float] = None  # at the epoch picked by accuracy on the noisy held-out split
    selected_epoch: Optional[int] = None
    bootstrap_start_epoch: Optional[int] = None
    last_train_acc_noisy: Optional[float] = None  # the last tracked epoch's, against the given labels
    last_train_acc_clean: Optional[float] = None
    label_issues_epoch: Optional[int] = None  # the epoch whose P(noisy) the label issues are
    label_issues_from_epoch: Optional[int] = None  # the first epoch of that P(noisy)'s mean over epochs
    detection_auc: Optional[float] = None
    detection_precision: Optional[float] = None
    detection_recall: Optional[float] = None
    estimated_noise_rate: Optional[float] = None
    noise_model_collapsed_epochs: Optional[int] = None
    actual_noise_rate: Optional[float] = None  # share of training labels the noise changed
    # what the run decided by itself, and why (docs/robust-defaults.md)
    bootstrap_start_reason: Optional[str] = None  # the fixed warm-up, or the signal that ended early learning
    correction_kept: Optional[bool] = None  # False: the correction did not beat its own warm-up, which is kept
    correction_stopped: Optional[str] = None  # why the correction stopped before the end (it collapsed the network)
    noise_estimate_doubt: Optional[str] = None  # why `estimated_noise_rate` cannot be trusted (None: no doubt)
    training_note: Optional[str] = None  # the model never learnt (accuracy at chance) and the likely cause
    # accuracy on the user's test set, which never selects: at the selected epoch (an unbiased figure,
    # unlike selected_val_acc when the validation set selected), the maximum over epochs (an oracle,
    # like best_val_acc) and the last epoch's
    selected_test_acc: Optional[float] = None
    best_test_acc: Optional[float] = None
    last_test_acc: Optional[float] = None
    # a run with a plain CE twin (in its folder's plain-twin/): the model it keeps ("run": its own,
    # "plain-twin": the twin's), the selection signal of each at its selected epoch (the trailing
    # mean of noisy-validation accuracy), and the kept model's selected accuracy and epoch (its
    # test accuracy too, with a test set): what a user obtains from the run
    kept_model: Optional[str] = None
    selection_score: Optional[float] = None
    twin_selection_score: Optional[float] = None
    kept_val_acc: Optional[float] = None
    kept_epoch: Optional[int] = None
    kept_test_acc: Optional[float] = None
    twin_failed: Optional[str] = None  # why the twin could not be compared (it diverged): the run's own model is kept
    # the twin's epoch whose P(noisy) the label issues average with the run's (`latentmix.plain_twin`)
    twin_label_issues_epoch: Optional[int] = None
    flagged_noise_pairs: Optional[list] = None  # [given, predicted, count] rows of the flagged labels
    true_noise_pairs: Optional[list] = None  # [given, clean, count] rows of the wrong labels
    trained_as: Optional[str] = None  # "population of N" (the sweep store adds "sequential" / "reused")
    keys: tuple = TRAINER_KEYS
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "val_labels" in self.keys and self.val_labels is None:  # a new run's summary: say what val acc is against
            object.__setattr__(self, "val_labels", "given" if self.actual_noise_rate is None else "clean")
        # A figure outside `keys` would be silently lost on writing: refuse it where it is made.
        known = set(SUMMARY_KEYS)
        unknown = [key for key in self.keys if key not in known]
        if unknown:
            raise ValueError(f"RunSummary keys {unknown} are not summary fields; keep them in `extra`")
        lost = [key for key in SUMMARY_KEYS if key not in self.keys and getattr(self, key) is not None]
        if lost:
            raise ValueError(f"RunSummary has values for {lost}, which are not among its keys")

    @property
    def val_acc_on_given_labels(self) -> bool:
        """Whether the validation accuracies are measured against the labels as given, with no
        clean reference (then they read low: a right prediction of a wrong label counts as a
        miss). Files from before `val_labels` say so by a null `actual_noise_rate`; a file without
        that key at all is taken as clean."""
        if self.val_labels is not None:
            return self.val_labels == "given"
        return "actual_noise_rate" in self.keys and self.actual_noise_rate is None

    def to_dict(self) -> dict:
        """The result.json document: the summary's keys in file order, then `extra`."""
        present = set(self.keys)
        return {**{key: getattr(self, key) for key in SUMMARY_KEYS if key in present}, **self.extra}

    def scalars(self) -> dict:
        """`to_dict` without its lists (the noise pairs), NumPy scalars as Python numbers: one flat
        row, for a sweep store's trial attribute (stored as JSON) and the results CSVs."""
        row = {}
        for key, value in self.to_dict().items():
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()
            if value is None or isinstance(value, (str, int, float, bool)):
                row[key] = value
        return row

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> RunSummary:
        """A summary from a result.json document (or a sweep store's copy of one): every key this
        version knows becomes its field, the others go to `extra`; no value is converted."""
        known = set(SUMMARY_KEYS)
        values = {key: value for key, value in document.items() if key in known}
        extra = {key: value for key, value in document.items() if key not in known}
        return cls(**values, keys=tuple(key for key in SUMMARY_KEYS if key in values), extra=extra)


# Every summary field that can go into a file, in file order.
SUMMARY_KEYS = tuple(f.name for f in fields(RunSummary) if f.name not in ("keys", "extra"))
# The fields that hold a number (or null): a result.json with text there ("high") was formatted as
# a number by `detect` and `report`, a traceback.
NUMBER_KEYS = tuple(f.name for f in fields(RunSummary) if f.type in ("Optional[float]", "Optional[int]", "float", "int"))
