"""What a user can decide without clean labels: which samples to hold out for model selection,
when the early-learning phase ends (so bootstrapping starts before the wrong labels are learnt),
which epoch's noise model to trust for the label issues, and how noisy the labels are.

Everything here is a small pure function of arrays or of the per-epoch metric rows that
`latentmix.training.train` writes, so a resumed run re-derives the same decisions from its
`metrics.csv` and the rules can be measured offline (benchmarks/robust_defaults.py).

Background: networks learn the correctly labelled samples first and memorise the wrong labels
later (Arpit et al. 2017, "A Closer Look at Memorization in Deep Networks"; Liu et al. 2020,
"Early-Learning Regularization Prevents Memorization of Noisy Labels"). Arazo et al. 2019 start
bootstrapping at a fixed epoch tuned for CIFAR-10 (106 of 300); on a user's own data and
schedule, the end of early learning has to be read off the run itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from latentmix.errors import ConfigError

__all__ = [
    "clearly_above", "holdout_split", "early_learning_end", "learnt_from", "LearningEnd", "never_learnt", "noise_estimate_doubt", "selected_epoch", "separation", "flagged_share", "estimate_noise_rate",
    "flagged_confusion", "ranking_order", "memorisation_check", "memorisation_gap", "memorisation_after", "MemorisationCheck",
    "NOT_STARTED",
]


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (train, holdout) of a seeded split stratified on the *given* (noisy) labels.

    The held-out samples keep their noisy labels: accuracy on them is what a user without clean
    labels can select a checkpoint by. When a share r of the labels is changed to a uniformly drawn
    other class, their expected accuracy is ``(1 - r) acc + r (1 - acc) / (C - 1)``, increasing in
    the clean accuracy `acc` while r < (C - 1) / C, so its argmax over epochs picks the checkpoint
    clean accuracy would, up to sampling noise.
    ``fraction == 0`` holds nothing out.
    """
    n = int(labels.shape[0])
    if fraction == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    if not 0.0 < fraction < 0.5:
        raise ConfigError(f"--val-split must be in [0, 0.5), got {fraction}; 0 turns the noisy validation split off")
    if round(fraction * n) < 1 or n - round(fraction * n) < 2:
        raise ConfigError(f"--val-split {fraction} of {n} training samples leaves no validation or no training "
                          "samples; use a larger fraction, or 0 for none")
    return stratified_split(np.asarray(labels), fraction, seed)


@dataclass(frozen=True)
class LearningEnd:
    """When early learning ended (`early_learning_end`) and which signal said so, in words."""

    epoch: int
    reason: str


def standard_error(accuracy: float, samples: Optional[int]) -> float:
    """The binomial standard error of an accuracy measured on `samples` samples,
    sqrt(a (1 - a) / n); 0 when the sample count is unknown."""
    if not samples:
        return 0.0
    return float(np.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / samples))


def clearly_above(accuracy: float, level: float, samples: Optional[int]) -> bool:
    """Whether an accuracy (or agreement) measured on `samples` samples is above `level` by more
    than twice its standard error (`standard_error`), a > level + 2 sqrt(a (1 - a) / n): the test
    that a model is told apart from chance (level: the best constant prediction's accuracy), and
    that an agreement contradicts a noise estimate r (level: the 1 - r right labels)."""
    return accuracy > level + 2 * standard_error(accuracy, samples)


def early_learning_end(rows: Sequence[dict], *, holdout_size: Optional[int] = None, chance: Optional[float] = None,
                       patience: int = 3, latest: Optional[int] = None) -> Optional[LearningEnd]:
    """The last epoch of the early-learning phase (bootstrapping starts after it with
    `--warmup-epochs auto`) and the reason, or None while it goes on. Reads only what needs no
    clean labels: the per-epoch accuracy on the noisy held-out split (``select_acc``, measured on
    `holdout_size` samples).

    The phase can end only once the network has learnt something: its held-out accuracy above
    `chance` (the best constant prediction's, the largest class share of the held-out labels) by
    more than twice its standard error `se`. A barely trained network that is still improving
    cannot end it, so its noise model, which calls most labels wrong because the network knows
    little, never starts the correction. Once it has learnt, the phase is over when the held-out
    accuracy has not improved for `patience` epochs: what the model still learns no longer
    generalises, the point where early stopping would stop; and at the latest at epoch `latest`
    (the first lr decay). Neither test compares the network with a threshold tuned on some data
    set. Rows without a held-out accuracy (no selection split) end the phase at `latest` only.

    Not used, measured: "the model agrees with more given training labels than held-out ones
    beyond sampling error" (the onset of memorisation) fired at epoch 1 on the robustness suite's
    1-D signal (training 0.31 vs held-out 0.25 on 6 classes): a hard task's generalisation gap
    opens before any label is memorised, and bootstrapping from a 25%-accurate network ended 27
    points below (docs/robustness-suite.md). Nor the previous "training accuracy above the share
    the noise model calls clean": circular on a barely trained network (issue 24). Nor the trailing
    mean of 3 epochs that `selected_epoch` reads in place of each epoch's accuracy (so that one lucky
    epoch of a small split cannot end the phase): on 12 cells of the robustness suite (CE and
    LR-M-DYR-H, 2 seeds, 50 epochs) it lifted the weak tanh network at sym60 (LR-M-DYR-H 67.8 ->
    74.7, CE 79.9) and repaired the token run whose correction collapsed, but the later end cost
    the corrections that gain most (`few` sym40 85.5 -> 82.3, `many-classes` sym40 66.8 -> 64.8,
    `signal` class30 54.5 -> 52.0); a collapse is stopped instead (`correction_collapse`).
    """
    first_learnt = learnt_from(rows, holdout_size=holdout_size, chance=chance)
    best, best_epoch = -1.0, 0
    for row in rows:
        epoch = int(row["epoch"])
        select = row.get("select_acc")
        learnt = first_learnt is not None and epoch >= first_learnt
        if select is not None and select > best:
            best, best_epoch = float(select), epoch
        if select is not None and learnt and epoch - best_epoch >= patience:
            return LearningEnd(epoch, f"noisy-validation accuracy stopped improving (best {best:.3f} at epoch "
                                      f"{best_epoch}, none better in the {patience} epochs since)")
        if latest is not None and epoch >= latest and (learnt or select is None):
            return LearningEnd(epoch, f"the first lr decay (epoch {latest})")
    return None


def learnt_from(rows: Sequence[dict], *, holdout_size: Optional[int], chance: Optional[float]) -> Optional[int]:
    """The first epoch whose noisy-validation accuracy tells the network apart from chance (above
    `chance`, the best constant prediction's, by more than twice its standard error: the test
    `early_learning_end` needs before the phase can end), or None while none has; with no chance
    level (no selection split), the first epoch."""
    for row in rows:
        select = row.get("select_acc")
        if chance is None or (select is not None and clearly_above(float(select), chance, holdout_size)):
            return int(row["epoch"])
    return None


# How `bootstrap_start_reason` begins for a run whose correction never started (the memorisation check)
NOT_STARTED = "not started: "


@dataclass(frozen=True)
class MemorisationCheck:
    """Whether the network memorised given labels by the end of early learning
    (`memorisation_check`), the figures it read, and the verdict in words."""

    memorising: bool
    gap: float
    standard_error: float
    reason: str
    epoch: int = 0  # the epoch whose figures it read (the correction starts after it)


def memorisation_check(train_agreement: float, holdout_agreement: float, *, train_size: int,
                       holdout_size: int, epoch: int) -> MemorisationCheck:
    """Does the correction have anything to undo? Read at the last epoch of early learning (and, for
    a network that had memorised nothing by then, at every later epoch with twice the bar:
    `memorisation_after`).

    A network that has begun to memorise wrong labels agrees with the given labels of the samples
    it trains on (`train_agreement`, `train_acc_noisy`) more than with those of samples it never
    saw (`holdout_agreement`: accuracy against the held-out split's given labels), since on a
    held-out sample a wrong label can only be matched by chance. So the gap

        g = train_agreement - holdout_agreement

    is the sign of memorisation. Its sampling error, from the two agreements measured on n_train
    and n_holdout samples,

        se = sqrt(t (1 - t) / n_train + h (1 - h) / n_holdout),

    is dominated by the small held-out split, and the loss correction starts only when g > se:
    when the network shows memorisation beyond what chance alone makes of two agreements. Where
    g <= se the network fits its training labels no better than labels it never saw, within what
    the split can tell: bootstrapping has nothing to undo, while the predictions it would put in
    place of the flagged labels are no better than those labels; the run then trains on plainly,
    as CE (no correction, no mixing: `latentmix.training.Run.trains_plainly`), and says so.

    Why not the bare sign (g > 0, the rule before): on a network that memorised nothing the sign
    is a coin flip. Measured on the robustness suite (benchmarks/results/robustness-suite-se,
    docs/robust-defaults.md): the weak tanh network's runs that corrected on gaps of +0.001 to
    +0.026 at standard errors of 0.03-0.04 fell 4-31 points below CE; with g > se the worst cell
    against CE goes from -22.6 to -12.1 points at 50 epochs and from -15.6 to -2.0 at 150, and the
    mean gain over CE rises (+1.78 -> +2.18, +2.57 -> +2.83). Its cost: on 500 samples (a 50-row
    split, se ~0.07) some corrections that gained no longer start (`few` 0.7-3.9 points lower,
    still level with or above CE). The paper's protocols (CIFAR-10, the spirals, the Fashion-MNIST tables)
    keep their fixed warm-ups, which this check leaves alone. How the rule came about:
    `benchmarks/start_gate.py` chose between rules on the suite's LR-M twins without training;
    the sign won there while a run that did not correct trained on as LR-M, and lost once such a
    run trained as plain CE (robustness-suite-gate, -plain, -se).
    `standard_error` = sqrt(t (1 - t) / n_train + h (1 - h) / n_holdout) is reported beside the gap.
    """
    t, h = float(train_agreement), float(holdout_agreement)
    gap, se = memorisation_gap(t, h, train_size, holdout_size)
    memorising = gap > se
    if memorising:
        reason = (f"at epoch {epoch} the network agreed with its training labels more than with held-out ones "
                  f"({t:.3f} vs {h:.3f}, gap {gap:+.3f}, above its standard error {se:.3f}): it had begun to memorise")
    else:
        reason = (f"at the end of early learning (epoch {epoch}) the network agreed with its training labels no more "
                  f"than with held-out ones beyond chance ({t:.3f} vs {h:.3f}, gap {gap:+.3f}, standard error "
                  f"{se:.3f}): it had memorised no wrong label that the held-out split can show, so there was "
                  "nothing to correct, and its predictions were no better than the given labels; "
                  "the run trained on plainly, as CE: no correction, no mixing")
    return MemorisationCheck(memorising, gap, se, reason, int(epoch))


def memorisation_gap(train_agreement: float, holdout_agreement: float, train_size: int,
                     holdout_size: int) -> tuple[float, float]:
    """(g, se) of `memorisation_check`: g = t - h, se = sqrt(t (1 - t) / n_train + h (1 - h) / n_holdout)."""
    t, h = float(train_agreement), float(holdout_agreement)
    se = float(np.sqrt(max(t * (1 - t), 0.0) / max(int(train_size), 1) + max(h * (1 - h), 0.0) / max(int(holdout_size), 1)))
    return t - h, se


def memorisation_after(rows: Sequence[dict], at_end: MemorisationCheck, *, train_size: int, holdout_size: int,
                       holdout_key: str = "select_acc") -> MemorisationCheck:
    """Whether a network that had memorised nothing by the end of early learning (`at_end`, read
    there by `memorisation_check`) has begun to since: the first later epoch whose gap between its
    agreement with the training labels and with the held-out ones is above twice its standard
    error, g > 2 se, or `at_end` itself when none is.

    Why read again: the run trains on plainly from the end of early learning because there was
    nothing to correct then, not because there never will be. A plain network at the decayed rate
    goes on to memorise where the data let it; on the robustness suite, `images-npz` sym40 at 150
    epochs went from 0.39 agreement with its training labels at the end of early learning to 0.99,
    while the held-out split stayed at 0.30-0.40 and its test accuracy fell from 0.76 to 0.64; that is
    the premise of the check, met later. Why 2 se where the single reading at the end of early
    learning asks for 1: this one is read every epoch, and a gap that chance alone makes crosses
    one standard error at some epoch of a long run far more often than at one given epoch; twice
    it is the bar every reading this module repeats epoch after epoch asks for (`clearly_above`).
    The weak tanh network of the suite, whose correction on chance gaps cost it 4-31 points, never
    crosses it (its gaps stay at or below 0)."""
    if at_end.memorising:
        return at_end
    for row in rows:
        train, holdout = row.get("train_acc_noisy"), row.get(holdout_key)
        if int(row["epoch"]) <= at_end.epoch or train is None or holdout is None:
            continue
        gap, se = memorisation_gap(train, holdout, train_size, holdout_size)
        if gap > 2 * se:
            epoch = int(row["epoch"])
            reason = (f"{at_end.reason}; until epoch {epoch}, when it agreed with its training labels more than "
                      f"with held-out ones ({float(train):.3f} vs {float(holdout):.3f}, gap {gap:+.3f}, above twice "
                      f"its standard error {se:.3f}): it had begun to memorise, and the correction started")
            return MemorisationCheck(True, gap, se, reason, epoch)
    return at_end


@dataclass(frozen=True)
class Collapse:
    """A correction that left its network no better than a constant prediction (`correction_collapse`):
    the epoch, the figures read, and the verdict in words."""

    epoch: int
    agreement: float
    chance: float
    reason: str


def correction_collapse(rows: Sequence[dict], *, chance: float, train_size: int) -> Optional[Collapse]:
    """The first bootstrapping epoch at which the network agreed with the given labels of the
    samples it trains on no better than a constant prediction, or None.

    Hard bootstrapping trains each flagged sample on the network's own prediction. On a network
    that knows little, those targets pile up on a few classes, training on them pulls its
    predictions further there, and the loop can end with one class predicted for almost every
    sample. Its sign needs no clean label: the training agreement with the given labels,
    `train_acc_noisy` = t, falls to what the most common class alone scores, `chance` = c (its
    share among the `train_size` samples trained on). A network that still knows something of the
    labels agrees with them beyond that: whatever the noise, its predictions follow the right
    labels, which are the given ones more often than any one class is. So the correction has
    collapsed its network when

        t <= c + 2 se,  se = sqrt(c (1 - c) / n_train),

    twice the sampling error of a constant prediction's agreement on n_train samples. Its
    predictions then carry nothing to put in place of a label, and the run stops correcting
    (`latentmix.training.Run.collapse`). Measured on the robustness suite (docs/robustness-suite.md,
    "A correction that collapses its network"): it fires on 2 of its 172 LR-M-DYR-H runs, one token
    run at both schedules, whose warm-up ended on a one-epoch spike of a barely trained network
    (selected 21.4% -> 60.9% and 37.1% -> 61.5%, plain CE 60.0%); the other 170 are unchanged."""
    se = standard_error(chance, train_size)
    for row in rows:
        if not row.get("bootstrapping") or row.get("train_acc_noisy") is None:
            continue
        agreement = float(row["train_acc_noisy"])
        if agreement <= chance + 2 * se:
            epoch = int(row["epoch"])
            return Collapse(epoch, agreement, chance, (
                f"at epoch {epoch} the correction had collapsed the network: it agreed with {agreement:.3f} of its "
                f"training labels, no more than the most common class alone ({chance:.3f} + twice its standard "
                f"error {se:.3f}), so its predictions could not stand in for any label; the correction stopped and "
                "the run trained on plainly, as CE: no correction, no mixing, the lr schedule's own milestones"))
    return None


def never_learnt(rows: Sequence[dict], *, holdout_size: Optional[int], chance: Optional[float]) -> Optional[str]:
    """Why a run's network was never told apart from chance on its noisy held-out split (its best
    held-out accuracy within twice its standard error of the best constant prediction's), in words,
    with the likely causes; None when it was, or when the run has no such split or no chance level."""
    scored = [float(row["select_acc"]) for row in rows if row.get("select_acc") is not None]
    if not scored or chance is None:
        return None
    best = max(scored)
    if clearly_above(best, chance, holdout_size):
        return None
    se = standard_error(best, holdout_size)
    size = f" on {holdout_size} samples" if holdout_size else ""
    return (f"the model was never told apart from chance on the noisy validation split: its best accuracy there, "
            f"{best:.3f}, is within twice its standard error ({2 * se:.3f}{size}) of the most common class alone "
            f"({chance:.3f}), so the correction never started; either the model learnt nothing (a learning rate "
            "too high or too low: try --lr) or the split is too small to tell (--val-split)")


# Epochs averaged when picking a checkpoint by noisy-validation accuracy (`selected_epoch`).
SELECTION_WINDOW = 3

# Two trailing means closer than this are the same fraction of the held-out split: accuracies are
# counts k / n, read as float32 means in a run and through metrics.csv's 6 significant digits
# (each off by up to 5e-7), while two different means of a 3-epoch window differ by at least
# 1 / (3 n), more than twice this for any split under 160,000 samples.
SAME_MEAN = 1e-6


def selected_epoch(rows: Sequence[dict], window: int = SELECTION_WINDOW) -> Optional[int]:
    """The epoch a user picks by noisy-validation accuracy: the highest mean over it and the
    `window - 1` epochs before it (fewer at the start; the first of equal maxima), or None when
    the run has no selection split.

    Why a trailing mean rather than the single best epoch: the held-out labels are as noisy as the
    rest, so the selection signal is small against its sampling noise. With a share r of the labels
    redrawn uniformly over C classes, the accuracy against the given labels is (1 - r) a + r / C for
    a clean accuracy a: at r = 0.8, 10 points of test accuracy move it by 2 points, while on 500
    held-out samples its standard error is ~1.8 points. The maximum over 40 single epochs then often lands on a lucky early one
    (measured on Fashion-MNIST, 80% noise: epoch 5 at 60% test accuracy, against 71% from epoch 20
    on; docs/fashion-mnist.md). Averaging 3 epochs cuts that noise by ~1.7x and never looks ahead,
    so the checkpoint can still be kept as the run goes.

    Equal means are equal fractions of the split (ties are common on small splits), so a later
    epoch is picked only when its mean is higher by more than `SAME_MEAN`: otherwise the rounding
    of the sums (0.62 + 0.74 + 0.74 against 0.74 + 0.74 + 0.62) would decide, differently for the
    run's float32 accuracies and for the 6 digits of metrics.csv that an offline replay reads."""
    best_mean, chosen = -np.inf, None
    for epoch, mean in trailing_means(rows, window):
        if mean > best_mean + SAME_MEAN:
            best_mean, chosen = mean, epoch
    return chosen


def trailing_means(rows: Sequence[dict], window: int = SELECTION_WINDOW) -> list[tuple[int, float]]:
    """(epoch, the selection signal there) for each epoch with a noisy-validation accuracy: the mean
    of it and the `window - 1` scored epochs before it (fewer at the start)."""
    scored = [(float(row["select_acc"]), int(row["epoch"])) for row in rows if row.get("select_acc") is not None]
    means = []
    for i, (_, epoch) in enumerate(scored):
        trailing = scored[max(0, i - window + 1):i + 1]
        means.append((epoch, sum(value for value, _ in trailing) / len(trailing)))
    return means


def selection_score(rows: Sequence[dict], epoch: Optional[int], window: int = SELECTION_WINDOW) -> Optional[float]:
    """The selection signal at `epoch` (`trailing_means`), the mean `selected_epoch` maximises;
    None when the run selects no epoch."""
    return dict(trailing_means(rows, window)).get(epoch) if epoch is not None else None


def keeps_plain_twin(score: Optional[float], twin_score: Optional[float]) -> bool:
    """Whether a run keeps its plain CE twin's model over its own: the twin's selection signal at
    its selected epoch is higher (by more than `SAME_MEAN`: a tie keeps the run's own).

    Why the higher signal and not a test of the difference: both read the same held-out rows, so
    the one with the higher noisy-validation accuracy is the one `selected_epoch` would pick if the
    two runs were one trajectory. A test keeps the run's own model where the split is too small to
    tell, which is where mixing's losses hide: an unpaired 2-standard-error margin kept mixed
    networks 12-33 points below their twin on data whose classes mixing does not suit, and McNemar's
    paired test on the two selected models' held-out predictions (p < 0.05) left the suite's worst
    cell 5.2 points and the held-out data's 10.4 below CE, against 1.5 for the higher signal
    (benchmarks/plain_twin.py, rules `whole-2se` and `whole-paired` against `whole-model`;
    docs/robustness-suite.md, "The plain CE twin, built")."""
    return score is not None and twin_score is not None and twin_score > score + SAME_MEAN


def separation(p_noisy: np.ndarray, losses: np.ndarray) -> float:
    """How well the noise model's split separates the losses, without clean labels: Otsu's
    between-class share of the variance with the posterior as a soft assignment,

        eta^2 = w0 * w1 * (m1 - m0)^2 / var(l),  w1 = mean P(noisy), m_k = the weighted mean loss,

    on the losses' ranks scaled to [0, 1] (so that a few huge losses do not dominate). 0 when the
    model calls everything clean or everything noisy (a collapsed fit), or flags the low losses
    rather than the high ones; 0.75 (as N grows) for a
    hard split at the median loss.
    Used to pick the epoch whose P(noisy) a user gets (Otsu 1979, "A threshold selection method
    from gray-level histograms")."""
    p = np.asarray(p_noisy, dtype=np.float64)
    x = np.argsort(np.argsort(np.asarray(losses), kind="stable"), kind="stable") / max(len(p) - 1, 1)
    w1 = p.mean()
    w0 = 1.0 - w1
    if len(p) < 2 or w1 < 1e-6 or w0 < 1e-6:
        return 0.0
    m1 = float((p * x).sum() / p.sum())
    m0 = float(((1 - p) * x).sum() / (1 - p).sum())
    if m1 <= m0:  # the "noisy" side holds the low losses: no usable split
        return 0.0
    return float(w0 * w1 * (m1 - m0) ** 2 / x.var())


def flagged_share(p_noisy: np.ndarray, threshold: float = 0.5) -> float:
    """The share of samples the noise model flags, P(noisy) > `threshold`."""
    return float(np.mean(np.asarray(p_noisy) > threshold)) if len(p_noisy) else float("nan")


def estimate_noise_rate(rows: Sequence[dict], learning_end: int) -> Optional[float]:
    """Estimated fraction of wrong labels: the median over the early-learning epoch rows
    (3..`learning_end`, see `early_learning_end`) of the share of samples the noise model flags.

    Why that window: while the network learns the clean labels first, the losses of the wrong
    labels stay high and the mixture splits them off cleanly; once it memorises them (or once
    bootstrapping pulls their targets towards the predictions) their losses fall and the flagged
    share drifts below the truth. Epochs 1 and 2 are left out (the network has barely learnt anything);
    the median shrugs off one odd epoch. Measured in docs/robust-defaults.md.

    Epochs whose mixture found no two groups (`separation` 0: everything called clean, or
    everything noisy) say nothing about the share and are left out; where early learning has no
    other epoch, the first separating one after it stands in. Only when no epoch separated is the
    estimate taken from the collapsed fits (0: no wrong labels found). Without this, class-dependent
    noise on Fashion-MNIST, whose fits collapse in 3 of the first 5 epochs, read 0.0 for 25% wrong
    labels (docs/fashion-mnist.md)."""
    shares = [row["flagged_share"] for row in estimate_rows(rows, learning_end)]
    return float(np.median(shares)) if shares else None


def estimate_rows(rows: Sequence[dict], learning_end: int) -> list[dict]:
    """The epoch rows `estimate_noise_rate` takes the median of: the tracked early-learning
    epochs 3..`learning_end` whose mixture separated, else the first separating one after them,
    else (nothing separated) the early-learning epochs as they are, or the last tracked one."""
    tracked = [row for row in rows if row.get("flagged_share") is not None]
    separating = [row for row in tracked if row.get("separation") != 0.0]  # None: a row from before `separation`
    in_window = [row for row in separating if 3 <= int(row["epoch"]) <= learning_end]
    if not in_window:
        later = [row for row in separating if int(row["epoch"]) > learning_end]
        in_window = later[:1]
    if not in_window:  # nothing separated (or nothing was tracked early): the old window, or the last epoch
        in_window = [row for row in tracked if 3 <= int(row["epoch"]) <= learning_end] or tracked[-1:]
    return in_window


# How close an estimated share of wrong labels should be to the truth to be reported without a
# doubt (issue 24's bar: within 5 points, or flagged); the epochs it is a median of must agree to
# twice that.
ESTIMATE_TOLERANCE = 0.05
# The fewest epochs an estimate is a median of before it can be trusted: of two or one, one odd
# epoch decides the median, which is there to shrug such an epoch off (`estimate_noise_rate`).
MEDIAN_EPOCHS = 3


def noise_estimate_doubt(rows: Sequence[dict], estimate: Optional[float], learning_end: Optional[int], *,
                         holdout_size: Optional[int] = None, holdout_is_noisy: bool = True,
                         train_size: Optional[int] = None, chance: Optional[float] = None) -> Optional[str]:
    """Why the estimated share of wrong labels (`estimate_noise_rate`) cannot be trusted, in words,
    or None when nothing speaks against it. Each reason follows from what the estimate claims:

    * no epoch of early learning split the losses into two groups (`separation` 0): the estimate
      stands on fits that found no noisy group;
    * early learning never ended (`learning_end` None): the network never learnt enough for its
      losses to tell the wrong labels from the hard ones;
    * the epochs it is the median of disagree: their flagged shares span more than twice
      `ESTIMATE_TOLERANCE`, so no one of them can be trusted to that tolerance;
    * it is the median of fewer than `MEDIAN_EPOCHS` epochs (`estimate_rows`: early learning ended
      at epoch 4, or all its fits but one found no two groups): the median, there to shrug off one
      odd epoch, is then decided by one, and the spread has too little to compare;
    * the held-out given labels contradict it: if a share r of the labels is wrong, a model agrees
      with at most 1 - r of them (all the right ones), so a best noisy-validation accuracy s above
      1 - r + 2 se is impossible for that r (`holdout_is_noisy`: the split keeps its given labels;
      where the split is scored against clean labels, the labels the file gives its rows,
      ``select_acc_given``, are as noisy as the training ones and stand in; a clean validation set
      without them says nothing). A model that does agree with some wrong held-out labels (noise
      that the inputs predict) breaks the bound only by predicting labels that no loss can flag,
      which the count then misses: either way the estimate is off;
    * the training labels contradict it, by the estimate's own premise: the flagged share is a
      count of the labels the network has not learnt, taken while it learns the right labels and
      not yet the wrong ones (`estimate_noise_rate`). Then it agrees with at most the 1 - r right
      ones, so a median training agreement above 1 - r + 2 se over the epochs the estimate is the
      median of (`train_size` samples) means either r is too high, or the network had learnt wrong
      labels by then, which the count misses (too low: instance-dependent noise on the robustness
      suite, docs/robustness-suite.md, "Doubting a low estimate");
    * the network had not learnt by then: over the same epochs its median accuracy on the selection
      split is not above `chance` (`clearly_above`, the test early learning needs to end at all), so
      it had learnt next to none of the right labels either, and a count of the unlearnt labels
      counts right ones as wrong (too high: the slow learner at 60% noise on the suite).
    An estimate that none of these contradicts can still be off: a network that never learns the
    wrong labels it cannot tell from hard ones looks the same as one on cleaner labels
    (docs/robustness-suite.md measures how far)."""
    if estimate is None:
        return None
    if learning_end is None:
        return "early learning never ended, so the losses never separated the wrong labels from the hard ones"
    window = [row for row in rows if row.get("flagged_share") is not None and 3 <= int(row["epoch"]) <= learning_end]
    if window and all(row.get("separation") == 0.0 for row in window):
        return "the noise model found no two groups of losses in the early-learning epochs"
    used = estimate_rows(rows, learning_end)  # past the test above, the separating early epochs when there are any
    shares = [float(row["flagged_share"]) for row in used]
    if len(shares) >= 2 and max(shares) - min(shares) > 2 * ESTIMATE_TOLERANCE:
        return (f"the share the noise model flags moved between {min(shares):.3f} and {max(shares):.3f} over the "
                f"early-learning epochs, more than twice the {ESTIMATE_TOLERANCE:.2f} an estimate should be good to")
    if len(used) < MEDIAN_EPOCHS:
        epochs = ", ".join(str(int(row["epoch"])) for row in used)
        return (f"the estimate rests on {len(used)} epoch{'s' if len(used) != 1 else ''} ({epochs}), fewer than the "
                f"{MEDIAN_EPOCHS} a median needs to shrug off one odd epoch")
    given = "select_acc" if holdout_is_noisy else "select_acc_given"
    scored = [float(row[given]) for row in rows if row.get(given) is not None]
    if scored:
        best = max(scored)
        if clearly_above(best, 1.0 - estimate, holdout_size):
            return (f"the model agrees with {best:.3f} of the held-out given labels, more than the {1.0 - estimate:.3f} "
                    "that can be right if the estimate were true")
    fitted = [float(row["train_acc_noisy"]) for row in used if row.get("train_acc_noisy") is not None]
    if fitted:
        agreement = float(np.median(fitted))
        if clearly_above(agreement, 1.0 - estimate, train_size):
            return (f"over the epochs the estimate is the median of, the network agreed with {agreement:.3f} of its "
                    f"training labels, more than the {1.0 - estimate:.3f} that are right if the estimate were true: "
                    "either the estimate is too high, or the network had already learnt wrong labels, which a count "
                    "of the labels it has not learnt then misses")
    selecting = [float(row["select_acc"]) for row in used if row.get("select_acc") is not None]
    if selecting and chance is not None:
        accuracy = float(np.median(selecting))
        if not clearly_above(accuracy, chance, holdout_size):
            return (f"over the epochs the estimate is the median of, the network's median validation accuracy "
                    f"{accuracy:.3f} was not told apart from the most common class alone ({chance:.3f}, within twice "
                    "its standard error): a network that has learnt next to nothing counts right labels among the "
                    "ones it has not learnt")
    return None


def flagged_confusion(given: np.ndarray, predicted: np.ndarray, flagged: np.ndarray, num_classes: int) -> list[list[int]]:
    """C x C counts of the flagged labels: row = the given class, column = the class the model
    predicts. Off-diagonal mass shows which classes the wrong labels come from and go to."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(given)[flagged], np.asarray(predicted)[flagged]), 1)
    return counts.tolist()


def ranking_order(p_noisy: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Sample order, most likely mislabeled first: P(noisy) descending, ties (the Beta mixture's
    posterior is a 100-entry table, so many samples share a value) broken by the loss descending."""
    return np.lexsort((-np.asarray(losses), -np.asarray(p_noisy)))


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: returns sorted (train_index, val_index).

    The validation size is round(val_fraction * N) clipped to [1, N - 1]; it is divided among the
    classes in proportion to their counts (largest remainders), then drawn at random per class.
    """
    n = int(labels.shape[0])
    if n < 2:
        raise ConfigError(f"cannot split {n} sample(s) into training and validation sets; provide at least 2 "
                          "samples or explicit val_* arrays")
    n_val = int(min(max(round(val_fraction * n), 1), n - 1))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n_val * counts / n
    take = np.floor(quota).astype(np.int64)
    remainder = quota - take
    short = n_val - int(take.sum())
    if short > 0:
        order = np.lexsort((rng.random(len(classes)), -remainder))  # largest remainder, random ties
        take[order[:short]] += 1
    # every class keeps a training sample (a class only in the validation set could never be learned)
    take = np.minimum(take, counts - 1)
    val_parts = []
    for cls, k in zip(classes, take):
        if k == 0:
            continue
        members = np.flatnonzero(labels == cls)
        val_parts.append(rng.choice(members, size=int(k), replace=False))
    if not val_parts:
        raise ConfigError(f"the validation split of {n} samples is empty: every class has one sample only, and each "
                          "class keeps one for training; provide more samples per class, or explicit val_* arrays")
    val_index = np.sort(np.concatenate(val_parts))
    mask = np.ones(n, dtype=bool)
    mask[val_index] = False
    return np.flatnonzero(mask), val_index
