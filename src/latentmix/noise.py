"""Label-noise injection for noisy-label training research.

Every function here takes clean integer labels and returns a `NoisyLabels`: the corrupted labels
plus a boolean mask that is True exactly where the new label differs from the clean one.

Three kinds of noise are provided:

* **Symmetric** (`symmetric_noise`): a chosen subset of samples gets a label drawn uniformly at
  random. This is the "uniform" noise of the paper "Interpolating Latent Representations to
  Increase Label Noise Tolerance" (section II.B) and of Arazo et al., "Unsupervised Label Noise
  Modeling and Loss Correction", ICML 2019 (reference functions `add_noise_cifar_w` and
  `add_noise_cifar_wo`).
* **Asymmetric** (`asymmetric_noise`): class-dependent flips, either through a class map
  (e.g. truck -> automobile, Patrini et al., CVPR 2017) or through a full noise transition matrix.
* **Model-driven** noise, from a clean model's predicted probabilities (the robustness suite,
  benchmarks/robustness_suite.py): `most_confused_classes` gives each class the class a clean model
  confuses it with most (a class map for `asymmetric_noise`), and `instance_dependent_noise`
  relabels the samples the clean model is least sure of to the wrong class it finds most likely,
  the hard, plausible mistakes of a human annotator (the "instance-dependent" noise of Xia et al.,
  "Part-dependent Label Noise", NeurIPS 2020, made deterministic here).
* **Real** noisy labels read from a file: `latentmix.label_files.labels_from_file`.

`make_noisy_labels` is a single entry point that dispatches on the kind of synthetic noise.

Reproducibility: no function touches a global random state. Each takes `seed: int` and draws
from its own `np.random.default_rng(seed)`, so the same call always gives the same labels and
calling it never changes the randomness of the rest of a program.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from latentmix.errors import ConfigError

__all__ = [
    "ASYMMETRIC_MAPS",
    "FASHION_MNIST_ASYMMETRIC_MAP",
    "CIFAR10_ASYMMETRIC_MAP",
    "NOISE_KINDS",
    "SELECTION_MODES",
    "NoisyLabels",
    "asymmetric_noise",
    "instance_dependent_noise",
    "most_confused_classes",
    "make_noisy_labels",
    "symmetric_noise",
]

# The standard CIFAR-10 asymmetric ("class-dependent") noise of Patrini et al. (2017), used by
# Arazo et al. (2019): truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
# Class indices follow torchvision's CIFAR10: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer,
# 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
CIFAR10_ASYMMETRIC_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# Fashion-MNIST's confusable pairs, swapped both ways as cat <-> dog above: T-shirt/top <-> shirt,
# pullover <-> coat, sneaker <-> ankle boot (classes 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress,
# 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot): the pairs an annotator mixes up.
# A clean-trained MLP confuses the first two most of all (264 and 225 of the 10,000 test images,
# both directions, against 198 for shirt/pullover and 80 for sandal/sneaker: docs/fashion-mnist.md);
# trouser, dress, sandal and bag never change.
FASHION_MNIST_ASYMMETRIC_MAP: dict[int, int] = {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7}

# The class map of each named data set's asymmetric noise (`--noise-kind asymmetric`).
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    "cifar10": CIFAR10_ASYMMETRIC_MAP,
    "fashion-mnist": FASHION_MNIST_ASYMMETRIC_MAP,
    "fashion-mnist-multimodal": FASHION_MNIST_ASYMMETRIC_MAP,
}

SELECTION_MODES = ("exact", "bernoulli")
NOISE_KINDS = ("symmetric", "asymmetric")

# Rows of a transition matrix must sum to 1 within this tolerance.
_ROW_SUM_TOLERANCE = 1e-6

# Keyword options each kind accepts in `make_noisy_labels`.
_KIND_OPTIONS = {
    "symmetric": ("selection", "include_true_label"),
    "asymmetric": ("class_map", "transition"),
}


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoisyLabels:
    """Noisy labels together with the mask of which ones are wrong.

    Attributes:
        labels: int64 tensor of shape (N,), on CPU: the noisy labels.
        is_noisy: bool tensor of shape (N,), on CPU: True where `labels` differs from the clean
            label. A sample that was selected for corruption but drew its own label back is
            *not* noisy.
    """

    labels: torch.Tensor
    is_noisy: torch.Tensor

    @property
    def actual_rate(self) -> float:
        """Fraction of samples whose label differs from the clean one (mean of `is_noisy`)."""
        if self.is_noisy.numel() == 0:
            return 0.0
        return float(self.is_noisy.float().mean().item())


def _result(noisy: np.ndarray, clean: np.ndarray | None) -> NoisyLabels:
    """Pack numpy labels into a `NoisyLabels`; the mask compares with `clean` (all False if None)."""
    noisy = np.ascontiguousarray(noisy, dtype=np.int64)
    mask = np.zeros(noisy.shape, dtype=bool) if clean is None else noisy != clean
    return NoisyLabels(labels=torch.from_numpy(noisy), is_noisy=torch.from_numpy(mask))


# --------------------------------------------------------------------------------------------
# Input validation (each raises ConfigError naming the argument, the bad value and the fix)
# --------------------------------------------------------------------------------------------


def _check_num_classes(num_classes: Any) -> int:
    """Return `num_classes` as an int, or raise if it is not an integer >= 2."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 (label noise needs at least two classes), got {num_classes}")
    return int(num_classes)


def _check_rate(rate: Any) -> float:
    """Return `rate` as a float, or raise if it is not a number in [0, 1] (NaN is rejected)."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ConfigError(f"noise rate must be a number in [0, 1], got {rate!r}")
    rate = float(rate)
    # Written as `not (0 <= rate <= 1)` so that NaN, which fails every comparison, is rejected.
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"noise rate must be in [0, 1], got {rate}")
    return rate


def _check_seed(seed: Any) -> int:
    """Return `seed` as an int, or raise: None would give a different result on every call."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (for reproducible noise), got {seed!r}")
    return int(seed)


def _to_label_array(labels: Any, num_classes: int | None, name: str = "labels") -> np.ndarray:
    """Convert a 1-D integer tensor or array to an int64 numpy array on CPU, checking its values.

    Parameters:
        labels: torch.Tensor or np.ndarray of shape (N,) with an integer dtype.
        num_classes: C; values must lie in [0, C). None only checks that values are >= 0.
        name: the argument name used in error messages.

    Returns:
        A new int64 array of shape (N,); the caller's data is never modified.
    """
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    elif isinstance(labels, np.ndarray):
        array = labels
    else:
        raise ConfigError(
            f"{name} must be a torch.Tensor or numpy.ndarray, got {type(labels).__name__}; "
            f"convert it with torch.as_tensor(...)"
        )
    if array.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (one label per sample), got shape {tuple(array.shape)}")
    # bool is deliberately not an integer dtype here: a mask passed by mistake should fail loudly.
    if not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"{name} must have an integer dtype, got {array.dtype}; cast with .long() or .astype(int)")
    if array.size == 0:
        raise ConfigError(f"{name} must contain at least one label, got an empty array")
    array = array.astype(np.int64, copy=True)
    _check_label_range(array, num_classes, name)
    return array


def _check_label_range(array: np.ndarray, num_classes: int | None, name: str) -> None:
    """Raise if any label is negative or (when `num_classes` is given) >= num_classes."""
    out_of_range = array < 0
    if num_classes is not None:
        out_of_range |= array >= num_classes
    bad = np.flatnonzero(out_of_range)
    if bad.size:
        index = int(bad[0])
        interval = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
        raise ConfigError(
            f"{name} must be in {interval}, got {int(array[index])} at index {index} "
            f"({bad.size} value(s) out of range); check num_classes or the label encoding"
        )


def _check_selection(selection: Any) -> str:
    """Raise unless `selection` is one of SELECTION_MODES."""
    if selection not in SELECTION_MODES:
        raise ConfigError(f"selection must be one of {', '.join(map(repr, SELECTION_MODES))}, got {selection!r}")
    return selection


def _check_class_map(class_map: Any, num_classes: int) -> dict[int, int]:
    """Return `class_map` as a plain {int: int} dict, or raise if a key or value is not a class."""
    if not isinstance(class_map, Mapping):
        raise ConfigError(f"class_map must be a dict {{source_class: target_class}}, got {type(class_map).__name__}")
    checked: dict[int, int] = {}
    for source, target in class_map.items():
        for role, value in (("key", source), ("value", target)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"class_map {role} must be an integer class index, got {value!r}")
            if not 0 <= value < num_classes:
                raise ConfigError(
                    f"class_map {role} must be in [0, {num_classes}), got {value} (in {source!r}: {target!r}); "
                    f"check num_classes"
                )
        checked[int(source)] = int(target)
    return checked


def _check_transition(transition: Any, num_classes: int) -> np.ndarray:
    """Return `transition` as a float64 (C, C) array, or raise if it is not row-stochastic.

    Row i must be a probability distribution: entries >= 0 that sum to 1 within 1e-6.
    """
    if isinstance(transition, torch.Tensor):
        transition = transition.detach().cpu().numpy()
    try:
        matrix = np.asarray(transition, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"transition must be a numeric (C, C) matrix, could not convert it: {exc}") from exc
    if matrix.shape != (num_classes, num_classes):
        raise ConfigError(
            f"transition must have shape ({num_classes}, {num_classes}) for num_classes={num_classes}, "
            f"got {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ConfigError(f"transition entries must be finite, row {row} contains NaN or inf")
    if np.any(matrix < 0):
        row, col = (int(i) for i in np.argwhere(matrix < 0)[0])
        raise ConfigError(f"transition entries must be >= 0 (probabilities), got {matrix[row, col]} at [{row}, {col}]")
    sums = matrix.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ConfigError(
            f"transition rows must sum to 1 (T[i, j] = P(noisy=j | clean=i)), row {row} sums to {sums[row]:.8g}; "
            f"normalise each row"
        )
    return matrix


# --------------------------------------------------------------------------------------------
# Symmetric noise
# --------------------------------------------------------------------------------------------


def _choose_samples(num_samples: int, rate: float, selection: str, rng: np.random.Generator) -> np.ndarray:
    """Pick the samples whose label will be resampled.

    Parameters:
        num_samples: N.
        rate: fraction of samples to pick, in [0, 1].
        selection: "exact" picks exactly round(rate * N) samples uniformly without replacement
            (Python's round: halves go to the even integer); "bernoulli" picks each sample
            independently with probability `rate`, so the count is Binomial(N, rate).
        rng: the generator to draw from.

    Returns:
        Bool array of shape (N,), True for the picked samples.
    """
    chosen = np.zeros(num_samples, dtype=bool)
    if selection == "exact":
        count = int(round(rate * num_samples))
        chosen[rng.permutation(num_samples)[:count]] = True
    else:
        chosen = rng.random(num_samples) < rate
    return chosen


def symmetric_noise(
    labels: torch.Tensor | np.ndarray,
    rate: float,
    num_classes: int,
    seed: int,
    *,
    selection: str = "exact",
    include_true_label: bool = True,
) -> NoisyLabels:
    """Symmetric (uniform) label noise: pick a fraction `rate` of samples and relabel them at random.

    Definition (paper section II.B; Arazo et al. 2019, `add_noise_cifar_w`): a selected sample gets
    a label drawn uniformly from all C classes, so it may get its own label back. The fraction of
    labels that actually change is therefore about rate * (C - 1) / C (0.72 for rate 0.8, C = 10).
    With `include_true_label=False` (`add_noise_cifar_wo`) the new label is drawn uniformly from
    the C - 1 *other* classes, so every selected sample changes and the changed fraction is `rate`.

    Parameters:
        labels: clean labels, 1-D integer tensor or array of shape (N,), values in [0, C).
        rate: fraction of samples selected for relabelling, in [0, 1].
        num_classes: C >= 2.
        seed: seed of the local random generator; same seed, same result.
        selection: "exact" (default) selects exactly round(rate * N) samples uniformly without
            replacement; "bernoulli" selects each sample independently with probability `rate`
            (the reference implementation's behaviour; the count varies around rate * N).
        include_true_label: whether the uniform draw includes the sample's own class.

    Returns:
        NoisyLabels with int64 labels of shape (N,) and the mask noisy != clean, both on CPU.
    """
    num_classes = _check_num_classes(num_classes)
    rate = _check_rate(rate)
    seed = _check_seed(seed)
    selection = _check_selection(selection)
    clean = _to_label_array(labels, num_classes)

    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(_choose_samples(clean.size, rate, selection, rng))
    noisy = clean.copy()
    if include_true_label:
        noisy[chosen] = rng.integers(0, num_classes, size=chosen.size)
    else:
        # Adding a uniform offset in {1, ..., C-1} modulo C gives a uniform draw over the other
        # C - 1 classes, without building a per-sample list of candidates.
        offsets = rng.integers(1, num_classes, size=chosen.size)
        noisy[chosen] = (clean[chosen] + offsets) % num_classes
    return _result(noisy, clean)


# --------------------------------------------------------------------------------------------
# Asymmetric (class-dependent) noise
# --------------------------------------------------------------------------------------------


def _flip_by_map(
    clean: np.ndarray, rate: float, class_map: Mapping[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Flip each sample of a mapped class to its target independently with probability `rate`.

    Flips are decided from the *clean* labels, so a swap such as cat <-> dog does not chain.
    """
    noisy = clean.copy()
    # One uniform draw per sample (not per mapped sample) keeps a sample's fate independent of
    # which other classes are in the map.
    flip = rng.random(clean.size) < rate
    for source, target in class_map.items():
        noisy[(clean == source) & flip] = target
    return noisy


def _sample_from_transition(clean: np.ndarray, transition: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw each noisy label from row `clean[i]` of the transition matrix."""
    noisy = clean.copy()
    classes = np.arange(transition.shape[0])
    for source in range(transition.shape[0]):
        members = np.flatnonzero(clean == source)
        if members.size:
            row = transition[source] / transition[source].sum()  # remove the <= 1e-6 rounding slack
            noisy[members] = rng.choice(classes, size=members.size, p=row)
    return noisy


def asymmetric_noise(
    labels: torch.Tensor | np.ndarray,
    rate: float | None,
    num_classes: int,
    seed: int,
    *,
    class_map: Mapping[int, int] | None = None,
    transition: np.ndarray | torch.Tensor | None = None,
) -> NoisyLabels:
    """Asymmetric (class-dependent) label noise, from a class map or a noise transition matrix.

    Two definitions, choose at most one:

    * class map {source: target} (default: `CIFAR10_ASYMMETRIC_MAP`, Patrini et al. 2017): every
      sample whose clean class is a key is flipped to the target *independently* with probability
      `rate` (so the flipped count per class is Binomial, not exact). Other classes never change.
    * transition matrix T of shape (C, C), T[i, j] = P(noisy = j | clean = i), rows summing to 1:
      each noisy label is drawn from the row of its clean class. T already encodes how much noise
      there is, so `rate` must be None (a rate passed alongside is rejected, not silently ignored).

    Parameters:
        labels: clean labels, 1-D integer tensor or array of shape (N,), values in [0, C).
        rate: flip probability in [0, 1] for the class map; None with a transition matrix.
        num_classes: C >= 2 (must be 10 for the default CIFAR-10 map).
        seed: seed of the local random generator; same seed, same result.
        class_map: dict {source_class: target_class}, keys and values in [0, C).
        transition: row-stochastic (C, C) numpy array, tensor or nested list.

    Returns:
        NoisyLabels with int64 labels of shape (N,) and the mask noisy != clean, both on CPU.
    """
    num_classes = _check_num_classes(num_classes)
    seed = _check_seed(seed)
    if class_map is not None and transition is not None:
        raise ConfigError("class_map and transition are mutually exclusive, got both; pass exactly one")
    clean = _to_label_array(labels, num_classes)
    rng = np.random.default_rng(seed)

    if transition is not None:
        if rate is not None:
            raise ConfigError(
                f"rate must be None when a transition matrix is given (the matrix sets the noise), got {rate!r}"
            )
        matrix = _check_transition(transition, num_classes)
        return _result(_sample_from_transition(clean, matrix, rng), clean)

    if rate is None:
        raise ConfigError("rate must be a number in [0, 1] when flipping by class_map, got None")
    rate = _check_rate(rate)
    if class_map is None:
        if num_classes != 10:
            raise ConfigError(
                f"num_classes must be 10 for the default CIFAR-10 class map, got {num_classes}; "
                f"pass class_map=... or transition=... for other datasets"
            )
        class_map = CIFAR10_ASYMMETRIC_MAP
    checked_map = _check_class_map(class_map, num_classes)
    return _result(_flip_by_map(clean, rate, checked_map, rng), clean)


# --------------------------------------------------------------------------------------------
# Noise driven by a clean model's predictions
# --------------------------------------------------------------------------------------------


def _check_probabilities(probabilities: Any, num_samples: int) -> np.ndarray:
    """Return `probabilities` as a float64 (N, C) array, or raise naming what is wrong."""
    if isinstance(probabilities, torch.Tensor):
        probabilities = probabilities.detach().cpu().numpy()
    matrix = np.asarray(probabilities, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != num_samples or matrix.shape[1] < 2:
        raise ConfigError(f"probabilities must have shape (N, C) = ({num_samples}, C >= 2), one row per label, "
                          f"got {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError("probabilities must be finite, got NaN or inf; pass a model's softmax outputs")
    return matrix


def most_confused_classes(labels: torch.Tensor | np.ndarray, probabilities: Any) -> dict[int, int]:
    """Each class's most confused class: for class c, the other class j with the largest mean
    predicted probability P(j | x) over the samples labelled c (ties: the lowest j). With a clean
    model's out-of-fold probabilities this is the confusion matrix's largest off-diagonal entry of
    row c, read from probabilities rather than arg-max counts so that a class the model never
    mistakes still gets the class it leans to. Classes without samples are left out of the map.

    Parameters:
        labels: clean labels (N,), values in [0, C).
        probabilities: (N, C) predicted class probabilities of a model trained on clean labels.

    Returns:
        {class: most confused other class}, the `class_map` of `asymmetric_noise`.
    """
    clean = _to_label_array(labels, None)
    matrix = _check_probabilities(probabilities, clean.size)
    _check_label_range(clean, matrix.shape[1], "labels")
    mapping = {}
    for source in np.unique(clean):
        leaning = matrix[clean == source].mean(axis=0)
        leaning[source] = -np.inf
        mapping[int(source)] = int(np.argmax(leaning))
    return mapping


def instance_dependent_noise(labels: torch.Tensor | np.ndarray, probabilities: Any, rate: float) -> NoisyLabels:
    """Instance-dependent noise: the round(rate * N) samples a clean model is least sure of (the
    lowest predicted probability of their own class; ties: the lower index first) get the wrong
    class that model finds most likely (ties: the lowest class id). Every chosen label changes,
    so the changed fraction is exactly round(rate * N) / N. Deterministic: the probabilities
    decide everything, as an annotator's mistakes follow the images, not a random draw.

    Parameters:
        labels: clean labels (N,), values in [0, C).
        probabilities: (N, C) predicted class probabilities of a model trained on clean labels
            (out-of-fold, so that the model has not memorised the sample).
        rate: fraction of samples to relabel, in [0, 1].

    Returns:
        NoisyLabels with int64 labels of shape (N,) and the mask noisy != clean, both on CPU.
    """
    rate = _check_rate(rate)
    clean = _to_label_array(labels, None)
    matrix = _check_probabilities(probabilities, clean.size)
    _check_label_range(clean, matrix.shape[1], "labels")
    rows = np.arange(clean.size)
    own = matrix[rows, clean]
    chosen = np.argsort(own, kind="stable")[:int(round(rate * clean.size))]
    others = matrix.copy()
    others[rows, clean] = -np.inf
    noisy = clean.copy()
    noisy[chosen] = np.argmax(others[chosen], axis=1)
    return _result(noisy, clean)


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------


def make_noisy_labels(
    labels: torch.Tensor | np.ndarray,
    num_classes: int,
    *,
    kind: str = "symmetric",
    rate: float | None = 0.0,
    seed: int = 0,
    **options: Any,
) -> NoisyLabels:
    """Make synthetic noisy labels of the given kind; a thin dispatch for configs and CLIs.

    Parameters:
        labels: clean labels, 1-D integer tensor or array of shape (N,), values in [0, C).
        num_classes: C >= 2.
        kind: "symmetric" (`symmetric_noise`) or "asymmetric" (`asymmetric_noise`).
        rate: noise rate in [0, 1] (default 0.0: no noise). With kind="asymmetric" and a
            `transition` matrix, the matrix sets the noise: leave rate at 0.0 or pass None.
        seed: seed of the local random generator.
        **options: keyword options of the chosen function: `selection`, `include_true_label`
            for symmetric; `class_map`, `transition` for asymmetric.

    Returns:
        NoisyLabels as returned by the chosen function.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(map(repr, NOISE_KINDS))}, got {kind!r}")
    unknown = sorted(set(options) - set(_KIND_OPTIONS[kind]))
    if unknown:
        allowed = ", ".join(_KIND_OPTIONS[kind])
        raise ConfigError(f"option(s) {', '.join(unknown)} not valid for kind={kind!r}; valid options: {allowed}")
    if kind == "symmetric":
        return symmetric_noise(labels, rate, num_classes, seed, **options)
    if options.get("transition") is not None and rate == 0.0:
        # The default rate of 0.0 means "not set" here: the transition matrix defines the noise.
        rate = None
    return asymmetric_noise(labels, rate, num_classes, seed, **options)
