"""Tests for latentmix.noise: label-noise injection.

Expected values come from the definitions, not from the implementation: e.g. uniform relabelling
over all C classes changes a selected label with probability (C - 1) / C.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentmix.errors import ConfigError
from latentmix.label_files import labels_from_file
from latentmix.noise import (
    instance_dependent_noise,
    most_confused_classes,
    CIFAR10_ASYMMETRIC_MAP,
    NoisyLabels,
    _choose_samples,
    asymmetric_noise,
    make_noisy_labels,
    symmetric_noise,
)

N = 50_000
C = 10


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    """Balanced CIFAR-10-sized clean labels: 5000 of each class, shuffled."""
    return torch.from_numpy(np.random.default_rng(123).permutation(np.arange(N) % C))


# --- result type -----------------------------------------------------------------------------


def test_result_types_and_device(clean):
    out = symmetric_noise(clean, 0.4, C, seed=0)
    assert isinstance(out, NoisyLabels)
    assert out.labels.dtype == torch.int64 and out.labels.shape == (N,)
    assert out.is_noisy.dtype == torch.bool and out.is_noisy.shape == (N,)
    assert out.labels.device.type == "cpu" and out.is_noisy.device.type == "cpu"
    assert out.actual_rate == pytest.approx(out.is_noisy.float().mean().item())
    with pytest.raises(AttributeError):
        out.labels = out.labels  # frozen


def test_input_is_not_modified_and_numpy_accepted(clean):
    array = clean.numpy().copy()
    before = array.copy()
    out = symmetric_noise(array, 0.5, C, seed=1)
    np.testing.assert_array_equal(array, before)
    assert torch.equal(out.labels, symmetric_noise(torch.from_numpy(before), 0.5, C, seed=1).labels)


# --- symmetric noise -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.33333, 0.5, 0.8, 1.0])
def test_exact_selection_picks_round_rate_n(rate):
    chosen = _choose_samples(1001, rate, "exact", np.random.default_rng(0))
    assert chosen.sum() == round(rate * 1001)


def test_exact_mode_changed_fraction_is_rate_times_c_minus_1_over_c(clean):
    out = symmetric_noise(clean, 0.8, C, seed=0)
    assert abs(out.actual_rate - 0.8 * (C - 1) / C) < 0.01  # ~0.72


def test_bernoulli_mode_selected_fraction_is_close_to_rate(clean):
    # Without the true label every selected sample changes, so the mask is the selection.
    out = symmetric_noise(clean, 0.3, C, seed=0, selection="bernoulli", include_true_label=False)
    # Binomial(50000, 0.3): standard deviation of the fraction is about 0.002.
    assert abs(out.actual_rate - 0.3) < 0.01


def test_bernoulli_selection_count_varies_with_seed():
    counts = {int(_choose_samples(1000, 0.5, "bernoulli", np.random.default_rng(s)).sum()) for s in range(10)}
    assert len(counts) > 1


@pytest.mark.parametrize("rate", [0.2, 0.45, 1.0])
def test_without_true_label_changes_exactly_round_rate_n(clean, rate):
    out = symmetric_noise(clean, rate, C, seed=3, include_true_label=False)
    assert int(out.is_noisy.sum()) == round(rate * N)


def test_without_true_label_new_labels_are_uniform_over_other_classes(clean):
    out = symmetric_noise(clean, 1.0, C, seed=4, include_true_label=False)
    # Offset (noisy - clean) mod C should be uniform on {1, ..., C-1}, never 0.
    offsets = ((out.labels - clean) % C).numpy()
    counts = np.bincount(offsets, minlength=C)
    assert counts[0] == 0
    expected = N / (C - 1)
    assert np.all(np.abs(counts[1:] - expected) < 5 * math.sqrt(expected))


def test_same_seed_same_result_different_seed_different(clean):
    a = symmetric_noise(clean, 0.5, C, seed=7)
    b = symmetric_noise(clean, 0.5, C, seed=7)
    c = symmetric_noise(clean, 0.5, C, seed=8)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.is_noisy, b.is_noisy)
    assert not torch.equal(a.labels, c.labels)


def test_global_rng_state_is_untouched(clean):
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    symmetric_noise(clean, 0.5, C, seed=0)
    asymmetric_noise(clean, 0.5, C, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("selection", ["exact", "bernoulli"])
def test_rate_zero_returns_labels_unchanged(clean, selection):
    out = symmetric_noise(clean, 0.0, C, seed=0, selection=selection)
    assert torch.equal(out.labels, clean)
    assert not out.is_noisy.any()
    assert out.actual_rate == 0.0


def test_rate_one_gives_uniform_label_distribution(clean):
    out = symmetric_noise(clean, 1.0, C, seed=5)
    counts = np.bincount(out.labels.numpy(), minlength=C)
    expected = N / C
    # 5 standard deviations of a binomial count: essentially never fails by chance.
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected * (1 - 1 / C)))
    # And the labels are independent of the clean ones: about (C-1)/C of them differ.
    assert abs(out.actual_rate - (C - 1) / C) < 0.01


@pytest.mark.parametrize("include", [True, False])
def test_mask_equals_labels_differ_from_clean(clean, include):
    out = symmetric_noise(clean, 0.6, C, seed=2, include_true_label=include)
    assert torch.equal(out.is_noisy, out.labels != clean)
    assert int(out.labels.min()) >= 0 and int(out.labels.max()) < C


# --- asymmetric noise ------------------------------------------------------------------------


def test_default_map_flips_only_mapped_classes_to_targets(clean):
    rate = 0.4
    out = asymmetric_noise(clean, rate, C, seed=0)
    noisy, truth = out.labels.numpy(), clean.numpy()
    assert torch.equal(out.is_noisy, out.labels != clean)
    changed = noisy != truth
    for cls in range(C):
        members = truth == cls
        if cls in CIFAR10_ASYMMETRIC_MAP:
            assert set(np.unique(noisy[members & changed])) == {CIFAR10_ASYMMETRIC_MAP[cls]}
            # 5000 members per class, Binomial(5000, 0.4): sd of the fraction is about 0.007.
            assert abs(changed[members].mean() - rate) < 0.035
        else:
            assert not changed[members].any()


def test_custom_map_and_rate_one_flips_every_mapped_sample():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    out = asymmetric_noise(labels, 1.0, 3, seed=0, class_map={0: 2})
    assert out.labels.tolist() == [2, 1, 2, 2, 1, 2]
    assert out.is_noisy.tolist() == [True, False, False, True, False, False]


def test_swap_map_does_not_chain():
    labels = torch.tensor([3, 5] * 10)
    out = asymmetric_noise(labels, 1.0, C, seed=0)  # cat <-> dog
    assert out.labels.tolist() == [5, 3] * 10


def test_asymmetric_is_deterministic(clean):
    a = asymmetric_noise(clean, 0.3, C, seed=11)
    b = asymmetric_noise(clean, 0.3, C, seed=11)
    c = asymmetric_noise(clean, 0.3, C, seed=12)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


def test_identity_transition_changes_nothing(clean):
    out = asymmetric_noise(clean, None, C, seed=0, transition=np.eye(C))
    assert torch.equal(out.labels, clean)
    assert not out.is_noisy.any()


def test_transition_sampling_matches_row_probabilities():
    transition = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    per_class = 20_000
    labels = np.repeat(np.arange(3), per_class)
    out = asymmetric_noise(torch.from_numpy(labels), None, 3, seed=0, transition=torch.tensor(transition))
    noisy = out.labels.numpy()
    for i in range(3):
        freq = np.bincount(noisy[labels == i], minlength=3) / per_class
        # sd of a frequency is at most sqrt(0.25 / 20000) = 0.0035; allow about 4 sd.
        np.testing.assert_allclose(freq, transition[i], atol=0.015)
    assert torch.equal(out.is_noisy, out.labels != torch.from_numpy(labels))


# --- make_noisy_labels -----------------------------------------------------------------------


def test_make_noisy_labels_dispatches(clean):
    assert torch.equal(
        make_noisy_labels(clean, C, kind="symmetric", rate=0.3, seed=4, include_true_label=False).labels,
        symmetric_noise(clean, 0.3, C, 4, include_true_label=False).labels,
    )
    assert torch.equal(
        make_noisy_labels(clean, C, kind="asymmetric", rate=0.3, seed=4).labels,
        asymmetric_noise(clean, 0.3, C, 4).labels,
    )
    with_matrix = make_noisy_labels(clean, C, kind="asymmetric", seed=4, transition=np.eye(C))
    assert torch.equal(with_matrix.labels, clean)


def test_make_noisy_labels_default_is_no_noise(clean):
    out = make_noisy_labels(clean, C)
    assert torch.equal(out.labels, clean) and not out.is_noisy.any()


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rate": 1.5}, r"rate must be in \[0, 1\], got 1.5"),
        ({"rate": -0.1}, r"rate must be in \[0, 1\]"),
        ({"rate": float("nan")}, r"rate must be in \[0, 1\], got nan"),
        ({"rate": "0.5"}, r"rate must be a number"),
        ({"num_classes": 1}, r"num_classes must be >= 2 .*got 1"),
        ({"num_classes": 2.5}, r"num_classes must be an integer"),
        ({"labels": torch.tensor([[0, 1]])}, r"labels must be 1-D.*\(1, 2\)"),
        ({"labels": torch.tensor([0.0, 1.0])}, r"labels must have an integer dtype"),
        ({"labels": [0, 1]}, r"labels must be a torch.Tensor or numpy.ndarray"),
        ({"labels": torch.tensor([], dtype=torch.long)}, r"labels must contain at least one"),
        ({"labels": torch.tensor([0, 10])}, r"labels must be in \[0, 10\), got 10 at index 1"),
        ({"labels": np.array([-1, 0])}, r"labels must be in \[0, 10\), got -1 at index 0"),
        ({"selection": "random"}, r"selection must be one of 'exact', 'bernoulli', got 'random'"),
        ({"seed": None}, r"seed must be a non-negative integer"),
        ({"seed": -3}, r"seed must be a non-negative integer"),
    ],
)
def test_symmetric_bad_input(kwargs, match):
    args = {"labels": torch.tensor([0, 1, 2]), "rate": 0.5, "num_classes": C, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=match):
        symmetric_noise(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 5}, r"num_classes must be 10 for the default CIFAR-10 class map, got 5"),
        ({"class_map": {0: 1}, "transition": np.eye(C)}, r"class_map and transition are mutually exclusive"),
        ({"class_map": {12: 1}}, r"class_map key must be in \[0, 10\), got 12"),
        ({"class_map": {1: -1}}, r"class_map value must be in \[0, 10\), got -1"),
        ({"class_map": [(0, 1)]}, r"class_map must be a dict"),
        ({"rate": 2.0}, r"rate must be in \[0, 1\], got 2.0"),
        ({"rate": None}, r"rate must be a number in \[0, 1\] when flipping by class_map"),
        ({"rate": None, "transition": np.eye(3)}, r"transition must have shape \(10, 10\).*\(3, 3\)"),
        ({"rate": 0.2, "transition": np.eye(C)}, r"rate must be None when a transition matrix is given"),
        ({"rate": None, "transition": -np.eye(C)}, r"transition entries must be >= 0"),
        ({"rate": None, "transition": np.full((C, C), np.nan)}, r"transition entries must be finite, row 0"),
    ],
)
def test_asymmetric_bad_input(kwargs, match):
    args = {"labels": torch.tensor([0, 1, 2]), "rate": 0.5, "num_classes": C, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=match):
        asymmetric_noise(**args)


def test_transition_bad_row_sum_names_first_bad_row():
    matrix = np.eye(3)
    matrix[1] = [0.5, 0.4, 0.0]  # sums to 0.9
    matrix[2] = [0.5, 0.6, 0.0]  # also bad, but row 1 comes first
    with pytest.raises(ConfigError, match=r"transition rows must sum to 1.*row 1 sums to 0.9"):
        asymmetric_noise(torch.tensor([0, 1, 2]), None, 3, 0, transition=matrix)


def test_transition_row_sum_tolerance_accepts_tiny_rounding():
    matrix = np.eye(3)
    matrix[0] = [1 - 1e-7, 0.0, 0.0]
    asymmetric_noise(torch.tensor([0, 1, 2]), None, 3, 0, transition=matrix)


def test_make_noisy_labels_bad_kind_and_option():
    labels = torch.tensor([0, 1])
    with pytest.raises(ConfigError, match=r"kind must be one of 'symmetric', 'asymmetric', got 'pairflip'"):
        make_noisy_labels(labels, 2, kind="pairflip")
    with pytest.raises(ConfigError, match=r"option\(s\) class_map not valid for kind='symmetric'.*selection"):
        make_noisy_labels(labels, 2, rate=0.1, class_map={0: 1})
    with pytest.raises(ConfigError, match=r"rate must be a number"):
        make_noisy_labels(labels, 2, rate=None)


# --- labels_from_file ------------------------------------------------------------------------


def test_npy_file_with_clean_labels(tmp_path):
    path = tmp_path / "noisy.npy"
    np.save(path, np.array([0, 2, 1, 1], dtype=np.int32))
    out = labels_from_file(path, clean_labels=torch.tensor([0, 1, 1, 2]), num_classes=3)
    assert out.labels.dtype == torch.int64
    assert out.labels.tolist() == [0, 2, 1, 1]
    assert out.is_noisy.tolist() == [False, True, False, True]
    assert out.actual_rate == 0.5


def test_npy_file_without_clean_labels_has_empty_mask(tmp_path):
    path = tmp_path / "noisy.npy"
    np.save(path, np.array([3.0, 1.0]))  # whole-number floats are accepted
    out = labels_from_file(path)
    assert out.labels.tolist() == [3, 1]
    assert not out.is_noisy.any()


@pytest.mark.parametrize(
    "text",
    [
        "1\n0\n2\n",  # no header
        "noisy_label\n1\n0\n2\n",  # single non-integer header line
        " 1 \n\n0\n2",  # spaces, a blank line, no trailing newline
        "index,label,annotator\n0,1,a\n1,0,b\n2,2,c\n",  # a column named label
        "label\n1\n0\n2\n",
    ],
)
def test_csv_file_layouts(tmp_path, text):
    path = tmp_path / "noisy.csv"
    path.write_text(text)
    out = labels_from_file(path, clean_labels=np.array([1, 1, 2]), num_classes=3)
    assert out.labels.tolist() == [1, 0, 2]
    assert out.is_noisy.tolist() == [False, True, False]


def test_file_missing(tmp_path):
    path = tmp_path / "nope.npy"
    with pytest.raises(ConfigError, match=r"label file not found: .*nope\.npy"):
        labels_from_file(path)


def test_file_unknown_extension(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1\n2\n")
    with pytest.raises(ConfigError, match=r"label file must end in \.npy or \.csv, got 'labels.txt'"):
        labels_from_file(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("1\n2.5\n", r"must hold integers, got '2.5' on line 2"),
        ("label\n1\ncat\n", r"must hold integers, got 'cat' on line 3"),
        ("a,b\n1,2\n", r"has 2 columns but no column named 'label'"),
        ("", r"contains no labels"),
        ("header\n", r"contains a header but no labels"),
    ],
)
def test_csv_bad_content(tmp_path, text, match):
    path = tmp_path / "noisy.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        labels_from_file(path)


def test_npy_non_integer_values(tmp_path):
    path = tmp_path / "noisy.npy"
    np.save(path, np.array([1.0, 2.5]))
    with pytest.raises(ConfigError, match=r"must hold integers, got 2.5 at index 1"):
        labels_from_file(path)


def test_npy_wrong_shape(tmp_path):
    path = tmp_path / "noisy.npy"
    np.save(path, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match=r"must hold a 1-D array.*\(2, 2\)"):
        labels_from_file(path)


def test_file_length_mismatch_gives_both_lengths(tmp_path):
    path = tmp_path / "noisy.npy"
    np.save(path, np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match=r"holds 3 labels but clean_labels has 4"):
        labels_from_file(path, clean_labels=torch.tensor([0, 1, 2, 0]))


def test_file_values_out_of_range(tmp_path):
    path = tmp_path / "noisy.csv"
    path.write_text("0\n5\n")
    with pytest.raises(ConfigError, match=r"must be in \[0, 3\), got 5 at index 1"):
        labels_from_file(path, num_classes=3)
    path.write_text("0\n-2\n")
    with pytest.raises(ConfigError, match=r"must be in \[0, inf\), got -2 at index 1"):
        labels_from_file(path)


def test_file_bad_num_classes(tmp_path):
    path = tmp_path / "noisy.csv"
    path.write_text("0\n1\n")
    with pytest.raises(ConfigError, match=r"num_classes must be >= 2"):
        labels_from_file(path, num_classes=1)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST's class-dependent noise, as a run makes it


def test_fashion_mnist_runs_flip_only_confusable_pairs():
    from latentmix.data import Dataset
    from latentmix.config import RunConfig
    from latentmix.run_setup import make_labels

    clean = torch.arange(10).repeat_interleave(2000)
    dataset = Dataset(name="fashion-mnist", train_inputs=torch.zeros(len(clean), 1), train_labels=clean,
                      val_inputs=torch.zeros(1, 1), val_labels=torch.zeros(1, dtype=torch.long), num_classes=10)
    labels = make_labels(RunConfig(dataset="fashion-mnist", noise_kind="asymmetric", noise=0.4, seed=3), dataset)
    noisy = labels.labels.numpy()
    partner = {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7}  # T-shirt/shirt, pullover/coat, sneaker/ankle boot
    for cls in range(10):
        given = noisy[clean.numpy() == cls]
        changed = given[given != cls]
        if cls in partner:
            assert set(changed.tolist()) == {partner[cls]}
            assert abs(len(changed) / len(given) - 0.4) < 0.04  # Binomial(2000, 0.4): sd 0.011
        else:  # trouser, dress, sandal, bag keep their labels
            assert len(changed) == 0
    assert np.array_equal(labels.is_noisy.numpy(), noisy != clean.numpy())


def test_asymmetric_noise_needs_a_class_map_of_the_data_set():
    from latentmix.config import RunConfig

    with pytest.raises(ConfigError, match="noise_kind' 'asymmetric'.*spiral"):
        RunConfig(dataset="spiral", noise_kind="asymmetric", noise=0.2).validate()
    with pytest.raises(ConfigError, match="noise_kind' 'asymmetric'.*mine.npz"):
        RunConfig(data="mine.npz", noise_kind="asymmetric", noise=0.2).validate()
    RunConfig(dataset="fashion-mnist", noise_kind="asymmetric", noise=0.2).validate()


# --------------------------------------------------------------------------------------------
# Noise from a clean model's probabilities (hand-worked cases)
# --------------------------------------------------------------------------------------------

# Six samples, three classes. Own-class probabilities: 0.7, 0.4, 0.5, 0.9, 0.2, 0.45.
HAND_LABELS = np.array([0, 0, 1, 1, 2, 2])
HAND_PROBS = np.array([
    [0.7, 0.2, 0.1],   # class 0, sure
    [0.4, 0.1, 0.5],   # class 0, leans to 2
    [0.3, 0.5, 0.2],   # class 1, leans to 0
    [0.05, 0.9, 0.05],  # class 1, sure (tie 0/2: the lower class)
    [0.1, 0.7, 0.2],   # class 2, leans to 1 (least sure of all)
    [0.35, 0.2, 0.45],  # class 2, leans to 0
])


def test_most_confused_classes_hand_worked():
    # class 0: mean P over its rows = (0.55, 0.15, 0.30) -> 2; class 1: (0.175, 0.7, 0.125) -> 0;
    # class 2: (0.225, 0.45, 0.325) -> 1
    assert most_confused_classes(HAND_LABELS, HAND_PROBS) == {0: 2, 1: 0, 2: 1}


def test_instance_dependent_noise_hand_worked():
    # rate 0.5 of 6 -> the 3 least sure: rows 4 (0.2), 1 (0.4), 5 (0.45); each to its likeliest wrong class
    noisy = instance_dependent_noise(torch.tensor(HAND_LABELS), HAND_PROBS, 0.5)
    assert noisy.labels.tolist() == [0, 2, 1, 1, 1, 0]
    assert noisy.is_noisy.tolist() == [False, True, False, False, True, True]
    assert noisy.actual_rate == pytest.approx(0.5)


def test_instance_dependent_noise_ties_take_lower_index_and_class():
    # rows 0 and 1 equally unsure; rate 1/3 of 3 picks one: the lower index; its wrong classes tie: the lower
    probs = np.array([[0.2, 0.4, 0.4], [0.3, 0.2, 0.5], [0.8, 0.1, 0.1]])
    noisy = instance_dependent_noise(np.array([0, 1, 0]), probs, 1 / 3)  # own: 0.2, 0.2, 0.8
    assert noisy.labels.tolist() == [1, 1, 0]


def test_instance_dependent_noise_rate_zero_and_one():
    assert instance_dependent_noise(HAND_LABELS, HAND_PROBS, 0.0).labels.tolist() == HAND_LABELS.tolist()
    assert instance_dependent_noise(HAND_LABELS, HAND_PROBS, 1.0).is_noisy.all()


@pytest.mark.parametrize("probs, match", [
    (np.ones((5, 3)) / 3, r"shape \(N, C\) = \(6"),
    (np.full((6, 3), np.nan), "finite"),
])
def test_model_noise_bad_probabilities(probs, match):
    with pytest.raises(ConfigError, match=match):
        instance_dependent_noise(HAND_LABELS, probs, 0.3)
    with pytest.raises(ConfigError, match=match):
        most_confused_classes(HAND_LABELS, probs)


def test_model_noise_label_beyond_probability_columns():
    with pytest.raises(ConfigError, match=r"labels must be in \[0, 3\)"):
        most_confused_classes(np.array([0, 1, 2, 3, 0, 1]), HAND_PROBS)
