"""Tests for the label-noise models: latentmix.beta_mixture, latentmix.gaussian_mixture, and
latentmix.noise_model (the choice by name, rebuilding from a state, detection metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from latentmix.errors import ConfigError
from latentmix.beta_mixture import BetaMixture, fit_beta_mixture_em
from latentmix.gaussian_mixture import GaussianMixture
from latentmix.noise_model import detection_metrics, fit_noise_model, noise_model_from_state_dict


def _two_beta_sample(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.3
    return np.where(noisy, rng.beta(5, 2, n), rng.beta(2, 5, n))


def _bimodal_losses(seed: int, n: int = 10_000, noise_rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy-like losses: clean ones small, noisy ones large. Returns (losses, is_noisy)."""
    rng = np.random.default_rng(seed)
    is_noisy = rng.random(n) < noise_rate
    losses = np.where(is_noisy, rng.normal(4.0, 0.7, n), rng.gamma(2.0, 0.15, n))
    return np.abs(losses), is_noisy


# ------------------------------------------------------------------------------------ EM recovery


def test_em_recovers_two_beta_mixture():
    # Beta(2,5) x 0.7 + Beta(5,2) x 0.3 overlap heavily; from the reference start (1,2)/(2,1) the
    # moment-matching EM converges slowly: with 10 iterations (the reference's count) it is far
    # off (noisy alpha ~1.8 instead of 5), it first meets these tolerances at ~700 iterations for
    # this seed and is converged by ~2000. 1000 iterations: errors ~2-3%, limits 15% / 0.03.
    x = _two_beta_sample(seed=0)
    a, b, w = fit_beta_mixture_em(x, iterations=1000)
    np.testing.assert_allclose(a, [2.0, 5.0], rtol=0.15)
    np.testing.assert_allclose(b, [5.0, 2.0], rtol=0.15)
    np.testing.assert_allclose(w, [0.7, 0.3], atol=0.03)


def test_em_ten_iterations_is_not_converged_on_overlapping_components():
    x = _two_beta_sample(seed=0)
    a, _, _ = fit_beta_mixture_em(x, iterations=10)
    assert a[1] < 3.0  # documents the slow convergence noted above


def test_em_true_parameters_are_nearly_a_fixed_point():
    x = _two_beta_sample(seed=1)
    a, b, w = fit_beta_mixture_em(x, iterations=50, alphas=(2, 5), betas=(5, 2), weights=(0.7, 0.3))
    np.testing.assert_allclose(a, [2.0, 5.0], rtol=0.15)
    np.testing.assert_allclose(b, [5.0, 2.0], rtol=0.15)
    np.testing.assert_allclose(w, [0.7, 0.3], atol=0.03)


def test_em_rejects_values_outside_open_unit_interval():
    with pytest.raises(ConfigError, match="strictly inside"):
        fit_beta_mixture_em(np.array([0.0, 0.5, 0.7]))


def test_em_zero_variance_gives_finite_parameters():
    a, b, w = fit_beta_mixture_em(np.full(100, 0.3))
    assert np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(w).all()
    assert (a > 0).all() and (b > 0).all()


# ------------------------------------------------------------------------------ posterior table


def _random_fits(n_fits: int = 40):
    rng = np.random.default_rng(123)
    for _ in range(n_fits):
        n = int(rng.integers(50, 3000))
        frac = rng.uniform(0.05, 0.6)
        pa, pb, qa, qb = rng.uniform(0.2, 8.0, size=4)
        losses = np.concatenate([rng.beta(pa, pb, n), rng.beta(qa, qb, int(n * frac) + 1)]) * rng.uniform(0.5, 10)
        yield losses


def test_monotone_posterior_is_non_decreasing_for_many_random_fits():
    for losses in _random_fits():
        model = BetaMixture.fit(losses)
        assert np.all(np.diff(model.table) >= 0)
        grid = np.linspace(losses.min() - 1, losses.max() + 1, 2001)
        p = model.posterior(grid)
        assert np.all(np.diff(p) >= 0)
        assert p.min() >= 0 and p.max() <= 1


def _small_alpha_noisy_losses() -> np.ndarray:
    # Clean losses: a bump at moderate loss; noise: broad, with mass at both ends. The fitted
    # noisy component has alpha < 1 and smaller than the clean one's, so its pdf blows up at 0.
    rng = np.random.default_rng(0)
    return np.concatenate([rng.beta(4, 10, 3500), rng.beta(0.5, 0.7, 1500)])


def test_fit_with_small_alpha_noisy_component_reference_vs_monotone():
    losses = _small_alpha_noisy_losses()
    ref = BetaMixture.fit(losses, lookup="reference")
    mono = BetaMixture.fit(losses, lookup="monotone")
    assert ref.alphas[1] < 1.0 and ref.alphas[1] < ref.alphas[0]
    # Reference: entry 0 is the global max, so the whole table is set to it: everyone "noisy".
    assert ref.table[0] > 0.9
    assert np.all(ref.posterior(losses) > 0.9)
    # Monotone: non-decreasing, the low end is not flagged.
    assert np.all(np.diff(mono.table) >= 0)
    assert mono.table[0] < 0.5
    assert mono.posterior(np.array([losses.max()]))[0] > mono.posterior(np.array([np.median(losses)]))[0]


def test_reference_quirk_on_hand_made_parameters():
    # Noisy component alpha = 0.5 < clean alpha = 2: P(noisy) ~ 1 at the lowest loss.
    params = dict(alphas=(2.0, 0.5), betas=(5.0, 1.0), weights=(0.7, 0.3), loss_min=0.0, loss_max=1.0)
    ref = BetaMixture(**params, lookup="reference")
    mono = BetaMixture(**params, lookup="monotone")
    # Reference: entry 0 is ~1 and (tied with the high end) the argmax, so the flattening from
    # the argmax on sets the whole table to ~1: even the cleanest loss is flagged noisy.
    assert ref.table[0] > 0.99
    assert ref.posterior(np.array([0.0]))[0] > 0.99
    assert np.all(ref.table > 0.99)
    # Monotone: low end fixed, high end still noisy, non-decreasing.
    assert mono.table[0] < 0.2
    assert mono.posterior(np.array([0.0]))[0] < 0.2
    assert mono.table[-1] > 0.99
    assert np.all(np.diff(mono.table) >= 0)


def test_reference_lookup_index_is_int_100x():
    model = BetaMixture((1.0, 2.0), (2.0, 1.0), (0.5, 0.5), 0.0, 1.0, lookup="reference")
    losses = np.array([0.0, 0.2, 0.555, 0.9999, 5.0])
    x = model.rescale(losses)
    expected = model.table[np.clip((100 * x).astype(int), 0, 99)]
    np.testing.assert_array_equal(model.posterior(losses), expected)


def test_rescale_matches_reference_formula_and_clamps():
    losses = np.linspace(0.0, 10.0, 1001)
    model = BetaMixture.fit(losses)
    p5, p95 = np.percentile(losses, [5, 95])
    assert model.loss_min == pytest.approx(p5 + 1e-5)
    assert model.loss_max == pytest.approx(p95)
    x = model.rescale(np.array([-1.0, p5, (p5 + p95) / 2, p95, 100.0]))
    assert x[0] == pytest.approx(1e-3) and x[1] == pytest.approx(1e-3)
    assert x[2] == pytest.approx(((p5 + p95) / 2 - p5 - 1e-5) / (p95 - p5 - 1e-5 + 1e-6))
    assert x[3] < 1.0 and x[4] == pytest.approx(1 - 1e-3)


def test_bimodal_losses_are_separated():
    losses, is_noisy = _bimodal_losses(seed=7)
    for kind in ("beta", "gaussian"):
        model = fit_noise_model(losses, kind=kind)
        metrics = detection_metrics(model.posterior(losses), is_noisy)
        assert metrics["auc"] > 0.95, (kind, metrics)


def test_fit_accepts_torch_tensor():
    losses, _ = _bimodal_losses(seed=3, n=2000)
    a = BetaMixture.fit(losses)
    b = BetaMixture.fit(torch.from_numpy(losses).float())
    np.testing.assert_allclose(a.alphas, b.alphas, rtol=1e-4)
    np.testing.assert_allclose(a.posterior(losses), b.posterior(torch.from_numpy(losses)), atol=0.02)


def test_posterior_keeps_shape():
    losses, _ = _bimodal_losses(seed=4, n=500)
    model = BetaMixture.fit(losses)
    q = losses[:12].reshape(3, 4)
    assert model.posterior(q).shape == (3, 4)
    assert model.posterior(np.array([])).shape == (0,)


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["beta", "gaussian"])
def test_empty_losses_rejected(kind):
    with pytest.raises(ConfigError, match="empty"):
        fit_noise_model(np.array([]), kind=kind)


@pytest.mark.parametrize("kind", ["beta", "gaussian"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_losses_rejected(kind, bad):
    losses = np.linspace(0, 1, 100)
    losses[17] = bad
    with pytest.raises(ConfigError, match="NaN|infinite"):
        fit_noise_model(losses, kind=kind)


def test_nan_query_rejected():
    model = BetaMixture.fit(np.linspace(0, 1, 100))
    with pytest.raises(ConfigError, match="NaN"):
        model.posterior(np.array([0.1, float("nan")]))


@pytest.mark.parametrize(
    "kind,losses",
    [
        ("beta", np.full(1000, 0.7)),
        ("beta", np.array([2.5])),
        ("beta", np.array([1.0, 2.0])),  # both outside [p5, p95]: nothing left to fit
        ("gaussian", np.full(1000, 0.7)),
        ("gaussian", np.array([2.5])),
    ],
)
def test_zero_spread_gives_zero_posterior(kind, losses):
    model = fit_noise_model(losses, kind=kind)
    assert model.degenerate
    queries = np.array([-1.0, 0.0, 0.7, 2.5, 100.0])
    np.testing.assert_array_equal(model.posterior(queries), 0.0)
    np.testing.assert_array_equal(model.posterior_torch(torch.tensor(queries)).numpy(), 0.0)
    restored = noise_model_from_state_dict(json.loads(json.dumps(model.state_dict())))
    assert restored.degenerate


def test_mostly_equal_losses_are_degenerate():
    losses = np.concatenate([np.full(950, 0.3), np.linspace(1, 5, 50)])
    assert BetaMixture.fit(losses).degenerate  # p5 == p95


def test_unknown_kind_and_options_rejected():
    with pytest.raises(ConfigError, match="unknown noise model"):
        fit_noise_model(np.linspace(0, 1, 10), kind="student")
    with pytest.raises(ConfigError, match="unknown option"):
        fit_noise_model(np.linspace(0, 1, 10), kind="gaussian", lookup="monotone")
    with pytest.raises(ConfigError, match="lookup"):
        BetaMixture.fit(np.linspace(0, 1, 10), lookup="exact")
    with pytest.raises(ConfigError, match="em_iterations"):
        BetaMixture.fit(np.linspace(0, 1, 10), em_iterations=0)


def test_fit_requires_1d():
    with pytest.raises(ConfigError, match="1-D"):
        BetaMixture.fit(np.ones((3, 4)))


# --------------------------------------------------------------------------- state and torch path


@pytest.mark.parametrize("kind,opts", [("beta", {}), ("beta", {"lookup": "reference"}), ("gaussian", {})])
def test_state_dict_round_trip_gives_identical_posteriors(kind, opts):
    losses, _ = _bimodal_losses(seed=11, n=3000)
    model = fit_noise_model(losses, kind=kind, **opts)
    state = model.state_dict()
    text = json.dumps(state)  # plain Python types only
    restored = noise_model_from_state_dict(json.loads(text))
    assert type(restored) is type(model)
    queries = np.linspace(-1, losses.max() + 1, 5000)
    np.testing.assert_array_equal(restored.posterior(queries), model.posterior(queries))
    assert restored.state_dict() == state


def test_from_state_dict_rejects_wrong_kind():
    state = BetaMixture.fit(np.linspace(0, 1, 100)).state_dict()
    with pytest.raises(ConfigError, match="kind"):
        GaussianMixture.from_state_dict(state)
    with pytest.raises(ConfigError, match="missing"):
        BetaMixture.from_state_dict({"kind": "beta", "alphas": [1, 2]})


@pytest.mark.parametrize("kind,opts", [("beta", {}), ("beta", {"lookup": "reference"}), ("gaussian", {})])
def test_posterior_torch_equals_posterior(kind, opts):
    losses, _ = _bimodal_losses(seed=5, n=4000)
    model = fit_noise_model(losses, kind=kind, **opts)
    queries = np.concatenate([np.linspace(-1, losses.max() + 2, 3001), [np.inf, -np.inf]])
    expected = model.posterior(queries)
    got = model.posterior_torch(torch.tensor(queries, dtype=torch.float64))
    assert got.dtype == torch.float64 and got.shape == expected.shape
    if kind == "beta":
        np.testing.assert_array_equal(got.numpy(), expected)
    else:
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    got32 = model.posterior_torch(torch.tensor(queries, dtype=torch.float32))
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), model.posterior(queries.astype(np.float32)), atol=1e-6)


def test_posterior_torch_propagates_nan():
    model = BetaMixture.fit(np.linspace(0, 1, 100))
    out = model.posterior_torch(torch.tensor([0.2, float("nan")]))
    assert not torch.isnan(out[0]) and torch.isnan(out[1])


# ------------------------------------------------------------------------------ detection metrics


def _brute_force_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    pos, neg = scores[truth], scores[~truth]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 5, n) / 4.0  # many ties
        truth = rng.random(n) < 0.4
        if truth.all() or not truth.any():
            truth[0] = not truth[0]
        got = detection_metrics(scores, truth)["auc"]
        assert got == pytest.approx(_brute_force_auc(scores, truth), abs=1e-12)


def test_precision_recall_by_hand():
    p = np.array([0.9, 0.8, 0.6, 0.5, 0.4, 0.1])
    y = np.array([1, 0, 1, 1, 0, 0])
    m = detection_metrics(p, y)  # flagged (> 0.5): 0.9, 0.8, 0.6 -> TP 2, FP 1, FN 1 (0.5 not > 0.5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(7 / 9)  # pairs: (0.9>all 3), (0.6>0.4,0.1), (0.5>0.4,0.1)
    m = detection_metrics(p, y, threshold=0.95)  # nothing flagged: 0/0 precision -> 0.0
    assert m["precision"] == 0.0 and m["recall"] == 0.0


def test_auc_nan_with_one_class():
    m = detection_metrics(np.array([0.1, 0.9]), np.array([False, False]))
    assert math.isnan(m["auc"]) and m["precision"] == 0.0 and m["recall"] == 0.0


def test_detection_metrics_rejects_bad_input():
    with pytest.raises(ConfigError):
        detection_metrics(np.array([0.1, 0.2]), np.array([1, 0, 1]))
    with pytest.raises(ConfigError):
        detection_metrics(np.array([0.1, float("nan")]), np.array([1, 0]))
    with pytest.raises(ConfigError):
        detection_metrics(np.array([0.1, 0.2]), np.array([2, 0]))


@pytest.mark.parametrize("lookup", ["monotone", "reference"])
def test_table_index_torch_equals_the_numpy_rescale_and_index(lookup):
    from latentmix.beta_mixture import _RESCALE_CLAMP, _TABLE_SIZE, _rescale_np, _table_index_torch

    losses, _ = _bimodal_losses(seed=6, n=3000)
    model = BetaMixture.fit(losses, lookup=lookup)
    lo, hi = model.loss_min, model.loss_max
    span = hi - lo + 1e-6
    # dense values, every table boundary and its neighbours, the clamp edges, infinities
    grid = lo + span * np.arange(0, _TABLE_SIZE + 1) / (_TABLE_SIZE if lookup == "reference" else 2 * (_TABLE_SIZE - 1))
    edges = lo + span * np.array([0.0, _RESCALE_CLAMP / 2, _RESCALE_CLAMP, 1 - _RESCALE_CLAMP, 1 - _RESCALE_CLAMP / 2, 1.0])
    queries = np.concatenate([np.linspace(lo - 1, hi + 1, 5001), grid, np.nextafter(grid, -np.inf),
                              np.nextafter(grid, np.inf), edges, [np.inf, -np.inf]])
    expected = model._index(_rescale_np(queries.copy(), lo, hi))
    got = _table_index_torch(torch.tensor(queries), lo, hi, lookup)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert _table_index_torch(torch.tensor([float("nan")], dtype=torch.float64), lo, hi, lookup).item() == _TABLE_SIZE


@pytest.mark.parametrize("kind,opts", [("beta", {}), ("beta", {"lookup": "reference"}), ("gaussian", {})])
def test_posterior_torch_clamp_is_clamping_the_posterior(kind, opts):
    losses, _ = _bimodal_losses(seed=7, n=4000)
    model = fit_noise_model(losses, kind=kind, **opts)
    queries = torch.tensor(np.concatenate([np.linspace(-1, losses.max() + 2, 2001), [np.inf, -np.inf]]), dtype=torch.float32)
    clamp = (1e-4, 1.0 - 1e-4)
    got = model.posterior_torch(queries, clamp=clamp)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, model.posterior_torch(queries).clamp(*clamp), rtol=0, atol=0)
    assert got.min() >= clamp[0] and got.max() <= clamp[1]
    assert torch.isnan(model.posterior_torch(torch.tensor([0.5, float("nan")]), clamp=clamp)[1])


def test_degenerate_posterior_torch_clamped():
    model = BetaMixture.fit(np.full(100, 0.3))
    assert model.degenerate
    got = model.posterior_torch(torch.tensor([0.1, 5.0]), clamp=(1e-4, 0.9999))
    torch.testing.assert_close(got, torch.full((2,), 1e-4))


@pytest.mark.parametrize("cls, names", [(BetaMixture, ("alphas", "betas", "weights")),
                                        (GaussianMixture, ("means", "variances", "weights"))])
def test_a_constructor_names_the_parameter_that_is_not_two_finite_numbers(cls, names):
    good = {name: [1.0, 2.0] for name in names}
    assert cls(**good, loss_min=0.0, loss_max=1.0).weights.tolist() == [1.0, 2.0]
    for name in names:
        for bad in ([1.0, 2.0, 3.0], [1.0, float("nan")], [[1.0], [2.0], [3.0]]):
            with pytest.raises(ConfigError, match=f"^{name}: expected 2 finite numbers"):
                cls(**{**good, name: bad}, loss_min=0.0, loss_max=1.0)
    with pytest.raises(ConfigError, match="weights >= 0"):
        cls(**{**good, "weights": [0.5, -0.5]}, loss_min=0.0, loss_max=1.0)
