"""The run's record as it grows, epoch by epoch: the metrics rows, the weights of the selected
epoch, and the per-sample view kept for the label issues (which epoch's, and each sample's P(noisy)
averaged over the epochs so far)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import nn

from latentmix.selection import learnt_from, selected_epoch


@dataclass
class RunLog:
    """The run's record as it grows: one metrics row per epoch, the model's weights at the best
    noisy-validation epoch (`selected_state`), and the per-sample view kept for the label issues
    (`snapshot`, see `label_view_improves`)."""

    metrics: list[dict] = field(default_factory=list)
    snapshot: Optional[dict] = None
    selected_state: Optional[dict] = None
    posterior_sums: Optional[dict] = None  # every tracked epoch's P(noisy) summed, see `add_posteriors`
    warmup_snapshot: Optional[dict] = None  # `snapshot` as the warm-up left it (the guard's fallback)
    # the selection split's size and chance level (`latentmix.training.selection_signal`): P(noisy)
    # is averaged from the first epoch that tells the network apart from chance (`add_posteriors`)
    holdout_size: Optional[int] = None
    chance: Optional[float] = None

    def add(self, row: dict, view: Optional[dict], model: nn.Module) -> None:
        if row.get("bootstrapping") and self.warmup_snapshot is None and self.snapshot is not None \
                and not any(r.get("bootstrapping") for r in self.metrics):
            self.warmup_snapshot = self.snapshot  # the first corrected epoch: keep the warm-up's view
        improved = row["select_acc"] is not None and row["select_acc"] > max(
            (r["select_acc"] for r in self.metrics if r.get("select_acc") is not None), default=-1.0)
        self.metrics.append(row)
        # the weights of the epoch a user keeps so far (`selected_epoch`: the trailing mean of the
        # noisy-validation accuracy), so that selected_model.pt is the reported selected epoch
        if row["select_acc"] is not None and selected_epoch(self.metrics) == row["epoch"]:
            self.selected_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        # the label issues from the single best epoch: the trailing mean picks the end of the best
        # stretch, later into memorisation (replayed on 164 runs: mean detection AUC 0.1-2.4 points
        # lower for CE, -1.6 to +1.2 for LR-M-DYR-H; docs/robust-defaults.md)
        if view is None:
            return
        # an epoch before the network is told apart from chance says nothing about which labels are
        # wrong (its losses rank what a network that has learnt nothing happens to output), so its
        # P(noisy) does not enter the mean (`learnt_from`; measured in docs/robust-defaults.md)
        if row["select_acc"] is None or learnt_from(self.metrics, holdout_size=self.holdout_size,
                                                    chance=self.chance) is not None:
            self.posterior_sums = add_posteriors(self.posterior_sums, view, row["epoch"])
        if label_view_improves(self.snapshot, view, row["select_acc"], improved):
            # with a selection signal, each sample's P(noisy) is its mean over the epochs so far
            # (`mean_posteriors` says why and what it measured); none learnt yet: the epoch's own
            averaged = mean_posteriors(self.posterior_sums) \
                if row["select_acc"] is not None and self.posterior_sums is not None else {}
            first = self.posterior_sums.get("first_epoch") if averaged else row["epoch"]
            self.snapshot = {"epoch": row["epoch"], "first_epoch": first, **view, **averaged}

    def restart_posterior_mean(self) -> None:
        """From the next tracked epoch on, each sample's P(noisy) is averaged over the epochs from
        there only: the run's training changed (`latentmix.training.Run.trains_plainly`: no mixing
        from the end of early learning), and the posteriors of the network before the change come
        from a differently trained network, whose losses the noise model splits differently.
        Measured on the robustness suite's weak tanh network, 8 runs that train plainly: detection
        AUC +0.2 to +12.0 points (sym20 97.1 -> 97.7, class30 71.7 -> 83.7, inst30 87.5 -> 96.2),
        docs/robust-defaults.md."""
        self.posterior_sums = None


def label_view_improves(current: Optional[dict], candidate: dict, select_acc: Optional[float], improved: bool) -> bool:
    """Whether an epoch's per-sample view replaces the one kept for the label issues: the view of
    the epoch of the best noisy-validation accuracy (`improved`: before the wrong labels are
    learnt) when the run has a selection signal, else the best-separated one."""
    if current is None:
        return True
    if select_acc is not None:
        return improved
    return candidate["separation"] > current["separation"]


def add_posteriors(sums: Optional[dict], view: dict, epoch: Optional[int] = None) -> dict:
    """Running sums of each tracked epoch's P(noisy): the training samples' and those of a user's
    validation rows (`epoch_view`), how many epochs went in, and the first of them (`epoch` of the
    first view added; None where not given, or in sums a checkpoint kept before it was recorded)."""
    val = view.get("val_p_noisy")
    if sums is None:
        return {"epochs": 1, "first_epoch": epoch, "p_noisy": view["p_noisy"].clone(),
                "val_p_noisy": None if val is None else val.clone()}
    return {"epochs": sums["epochs"] + 1, "first_epoch": sums.get("first_epoch"),
            "p_noisy": sums["p_noisy"] + view["p_noisy"],
            "val_p_noisy": None if val is None or sums["val_p_noisy"] is None else sums["val_p_noisy"] + val}


def mean_posteriors(sums: dict) -> dict:
    """Each sample's P(noisy) averaged over the epochs summed in `sums` (`add_posteriors`).

    Why a mean over epochs for the label issues: one epoch's posterior carries that epoch's noise
    (which samples the network happens to get right); the samples it flags epoch after epoch are
    the wrong labels, as in the training-dynamics scores of Pleiss et al. 2020 (AUM) and
    Swayamdipta et al. 2020 (data maps). Measured against the kept epoch's alone on 36 runs
    (benchmarks/label_epoch_combine.py, docs/robust-defaults.md): Fashion-MNIST 1k / 4k +0.9 to
    +4.0 AUC points, above even the run's best single epoch; generated data -0.7 to +0.7, except
    1k at 60% noise (-2.0 / -1.5), where the network learns slowly and its first epochs say little."""
    count = sums["epochs"]
    return {"p_noisy": sums["p_noisy"] / count,
            "val_p_noisy": None if sums["val_p_noisy"] is None else sums["val_p_noisy"] / count}
