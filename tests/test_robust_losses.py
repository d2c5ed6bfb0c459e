"""The peers' losses (GCE, SCE, ELR) against hand-computed values, each next to a deliberately
wrong variant that the same check tells apart; the ELR object's per-sample targets; the presets.

The batch: two samples, two classes, logits chosen so that the softmax is exact by hand:
    sample 0: logits [log 3, 0]  -> p = [3/4, 1/4], label 0
    sample 1: logits [0, log 4]  -> p = [1/5, 4/5], label 1
"""

import math

import pytest
import torch
from torch import nn

from latentmix.errors import ConfigError
from latentmix.methods import PRESETS, get_method, method_record
from latentmix.mixing import NO_MIX, MixPlan
from latentmix.peer_losses import ElrBatch, ElrLoss, RobustLoss, peer_loss_for
from latentmix.robust_losses import (
    elr_objective, elr_regularizer, elr_target_update, gce_per_sample, mixed_loss, sce_per_sample,
)

LOGITS = [[math.log(3.0), 0.0], [0.0, math.log(4.0)]]
P = [[0.75, 0.25], [0.2, 0.8]]
Y = [0, 1]
MIX = MixPlan(layer=1, lam=0.7, perm=torch.tensor([1, 0]))  # y[perm] = [1, 0]: p of those 1/4 and 1/5


def _batch():
    return torch.tensor(LOGITS), torch.tensor(Y)


def _mean(values):
    return sum(values) / len(values)


# ---- GCE ----------------------------------------------------------------------------------------

def test_gce_by_hand():
    # (1 - p_y^q) / q, q = 0.7: p_y = 3/4 and 4/5
    expected = [(1 - 0.75 ** 0.7) / 0.7, (1 - 0.8 ** 0.7) / 0.7]  # 0.2677..., 0.2068...
    assert gce_per_sample(*_batch(), q=0.7).tolist() == pytest.approx(expected, abs=1e-6)
    # the default is the paper's q = 0.7
    assert gce_per_sample(*_batch()).tolist() == pytest.approx(expected, abs=1e-6)
    # wrong variants the check tells apart: q on (1 - p) instead of on p, and the 1/q left out
    assert [(1 - p) ** 0.7 / 0.7 for p in (0.75, 0.8)] != pytest.approx(expected, abs=1e-3)
    assert [1 - p ** 0.7 for p in (0.75, 0.8)] != pytest.approx(expected, abs=1e-3)


def test_gce_limits_are_ce_and_mae():
    # q -> 0 is the cross-entropy -log p_y; q = 1 is 1 - p_y (the MAE up to a factor 2)
    assert gce_per_sample(*_batch(), q=1e-6).tolist() == pytest.approx([-math.log(0.75), -math.log(0.8)], abs=1e-5)
    assert gce_per_sample(*_batch(), q=1.0).tolist() == pytest.approx([0.25, 0.2], abs=1e-6)
    with pytest.raises(ConfigError, match="q must be in"):
        gce_per_sample(*_batch(), q=0.0)


def test_gce_mixed_by_hand():
    # 0.7 * mean L(out, y) + 0.3 * mean L(out, y[perm]); y[perm] = [1, 0]: p = 1/4, 1/5
    gce = lambda p: (1 - p ** 0.7) / 0.7  # noqa: E731
    expected = 0.7 * _mean([gce(0.75), gce(0.8)]) + 0.3 * _mean([gce(0.25), gce(0.2)])
    got = mixed_loss(lambda out, y: gce_per_sample(out, y, 0.7), *_batch(), MIX)
    assert float(got) == pytest.approx(expected, abs=1e-6)
    # the loss of the mixed (soft) target instead, (1 - (0.7 p_y + 0.3 p_y[perm])^q) / q, is another number
    wrong = _mean([gce(0.7 * 0.75 + 0.3 * 0.25), gce(0.7 * 0.8 + 0.3 * 0.2)])
    assert wrong != pytest.approx(expected, abs=1e-3)
    assert float(mixed_loss(lambda out, y: gce_per_sample(out, y), *_batch(), NO_MIX)) == pytest.approx(
        _mean([gce(0.75), gce(0.8)]), abs=1e-6)


# ---- SCE ----------------------------------------------------------------------------------------

def test_sce_by_hand():
    # alpha CE + beta RCE, RCE = -sum_c p_c log onehot_c with log 0 := -4: RCE = 4 (1 - p_y)
    ce = [-math.log(0.75), -math.log(0.8)]
    rce = [-(0.25 * -4.0), -(0.2 * -4.0)]  # the other class's probability times -A
    expected = [0.1 * ce[0] + 1.0 * rce[0], 0.1 * ce[1] + 1.0 * rce[1]]  # 1.02877, 0.82231
    assert sce_per_sample(*_batch()).tolist() == pytest.approx(expected, abs=1e-6)
    # wrong variants the check tells apart: the RCE term's sign, and the reproduction's A = log 1e-4
    assert [0.1 * c - r for c, r in zip(ce, rce)] != pytest.approx(expected, abs=1e-3)
    assert [0.1 * c + (1 - p) * -math.log(1e-4) for c, p in zip(ce, (0.75, 0.8))] != pytest.approx(expected, abs=1e-3)
    with pytest.raises(ConfigError, match="log_zero"):
        sce_per_sample(*_batch(), log_zero=0.0)


def test_sce_mixed_by_hand():
    sce = lambda p: 0.1 * -math.log(p) + 4.0 * (1 - p)  # noqa: E731
    expected = 0.7 * _mean([sce(0.75), sce(0.8)]) + 0.3 * _mean([sce(0.25), sce(0.2)])
    got = RobustLoss(4, loss="sce").loss(*_batch(), MIX)
    assert float(got) == pytest.approx(expected, abs=1e-6)


# ---- ELR ----------------------------------------------------------------------------------------

T = [[0.6, 0.4], [0.5, 0.5]]  # per-sample targets


def test_elr_regularizer_and_loss_by_hand():
    # <p, t>: 0.75*0.6 + 0.25*0.4 = 0.55; 0.2*0.5 + 0.8*0.5 = 0.5
    reg = _mean([math.log(1 - 0.55), math.log(1 - 0.5)])
    assert float(elr_regularizer(torch.tensor(LOGITS), torch.tensor(T))) == pytest.approx(reg, abs=1e-6)
    ce = _mean([-math.log(0.75), -math.log(0.8)])
    expected = ce + 3.0 * reg  # lambda = 3
    assert float(elr_objective(*_batch(), torch.tensor(T))) == pytest.approx(expected, abs=1e-6)
    # wrong variants the check tells apart: log(<p, t>) for log(1 - <p, t>), and the regularizer subtracted
    assert ce + 3.0 * _mean([math.log(0.55), math.log(0.5)]) != pytest.approx(expected, abs=1e-3)
    assert ce - 3.0 * reg != pytest.approx(expected, abs=1e-3)


def test_elr_mixed_by_hand():
    # targets mixed like the hidden state: m_0 = 0.7 [0.6, 0.4] + 0.3 [0.5, 0.5] = [0.57, 0.43],
    # m_1 = 0.7 [0.5, 0.5] + 0.3 [0.6, 0.4] = [0.53, 0.47]; <p_0, m_0> = 0.535, <p_1, m_1> = 0.482
    ce = 0.7 * _mean([-math.log(0.75), -math.log(0.8)]) + 0.3 * _mean([-math.log(0.25), -math.log(0.2)])
    expected = ce + 3.0 * _mean([math.log(1 - 0.535), math.log(1 - 0.482)])
    assert float(elr_objective(*_batch(), torch.tensor(T), MIX)) == pytest.approx(expected, abs=1e-6)
    # un-mixed targets against the mixed output: another number
    assert ce + 3.0 * _mean([math.log(0.45), math.log(0.5)]) != pytest.approx(expected, abs=1e-3)


def test_elr_gradient_flows_through_the_prediction_only():
    logits = torch.tensor(LOGITS, requires_grad=True)
    targets = torch.tensor(T, requires_grad=True)
    elr_regularizer(logits, targets).backward()
    assert targets.grad is None and logits.grad is not None and bool(logits.grad.abs().sum() > 0)


def test_elr_target_update_by_hand():
    # from zeros: 0.3 p; again: 0.7 * 0.3 p + 0.3 p = 0.51 p
    first = elr_target_update(torch.zeros(2, 2), torch.tensor(P), beta=0.7)
    assert first.flatten().tolist() == pytest.approx([0.225, 0.075, 0.06, 0.24], abs=1e-7)
    second = elr_target_update(first, torch.tensor(P), beta=0.7)
    assert second.flatten().tolist() == pytest.approx([0.3825, 0.1275, 0.102, 0.408], abs=1e-7)
    # a prediction whose rows do not sum to 1 (clamped) enters renormalised: [0.5, 0.1] -> [5/6, 1/6]
    assert elr_target_update(torch.zeros(1, 2), torch.tensor([[0.5, 0.1]]), 0.7).flatten().tolist() == pytest.approx(
        [0.3 * 5 / 6, 0.3 / 6], abs=1e-7)


class _Logits(nn.Module):
    """A 'model' whose output is its input: the un-mixed forward gives the logits handed in."""

    def forward(self, x):
        return x


def test_elr_object_updates_from_the_output_as_the_paper():
    elr = ElrLoss(3, update_from="output")
    logits, y = _batch()
    index = torch.tensor([2, 0])
    batch = elr.batch_targets(_Logits(), logits, y, index)
    assert isinstance(batch, ElrBatch) and batch.rows is None
    loss = elr.loss(logits, y, NO_MIX, batch)
    rows = [[0.225, 0.075], [0.06, 0.24]]  # 0.3 p, the first visit
    assert elr.targets[index].flatten().tolist() == pytest.approx(sum(rows, []), abs=1e-7)
    assert elr.targets[1].tolist() == [0.0, 0.0]  # not in the batch: untouched
    inner = [0.75 * 0.225 + 0.25 * 0.075, 0.2 * 0.06 + 0.8 * 0.24]
    expected = _mean([-math.log(0.75), -math.log(0.8)]) + 3.0 * _mean([math.log(1 - v) for v in inner])
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # 1 - t_i[y_i] with the given labels [0, ?, 1] at positions 0 and 2
    scores = elr.issue_scores(torch.tensor([1, 0, 1]))
    assert scores[0] == pytest.approx(1 - 0.24) and scores[2] == pytest.approx(1 - 0.075)
    with pytest.raises(ConfigError, match="update_from='unmixed'"):
        elr.loss(logits, y, MIX, elr.batch_targets(_Logits(), logits, y, index))


def test_elr_object_under_mixing_updates_from_the_unmixed_forward():
    elr = ElrLoss(2, update_from="unmixed")
    logits, y = _batch()
    batch = elr.batch_targets(_Logits(), logits, y, torch.tensor([0, 1]))
    assert batch.rows.flatten().tolist() == pytest.approx([0.225, 0.075, 0.06, 0.24], abs=1e-7)
    mixed_output = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # p = [1/2, 1/2] for both
    # m_0 = 0.7 [0.225, 0.075] + 0.3 [0.06, 0.24] = [0.1755, 0.1245]; m_1 = [0.1095, 0.1905]
    inner = [0.5 * (0.1755 + 0.1245), 0.5 * (0.1095 + 0.1905)]
    ce = 0.7 * math.log(2) + 0.3 * math.log(2)
    expected = ce + 3.0 * _mean([math.log(1 - v) for v in inner])
    assert float(elr.loss(mixed_output, y, MIX, batch)) == pytest.approx(expected, abs=1e-6)
    # the mixed output did not touch the targets
    assert elr.targets.flatten().tolist() == pytest.approx([0.225, 0.075, 0.06, 0.24], abs=1e-7)
    with pytest.raises(ConfigError, match="sample index"):
        elr.batch_targets(_Logits(), logits, y)


def test_elr_state_round_trip():
    elr = ElrLoss(2)
    logits, y = _batch()
    elr.loss(logits, y, NO_MIX, elr.batch_targets(_Logits(), logits, y, torch.tensor([0, 1])))
    again = ElrLoss(2)
    again.load_state_dict(elr.state_dict())
    assert torch.equal(again.targets, elr.targets)
    fresh = ElrLoss(2)
    fresh.load_run_state(elr.run_state())
    assert torch.equal(fresh.targets, elr.targets)


# ---- the methods ----------------------------------------------------------------------------------

def test_peer_presets_carry_the_papers_parameters():
    assert PRESETS["gce"].loss_settings == {"q": 0.7}
    assert PRESETS["sce"].loss_settings == {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0}
    assert PRESETS["elr"].loss_settings == {"beta": 0.7, "lambda": 3.0}
    assert PRESETS["lr-m-elr"].mix_layers == PRESETS["lr-m"].mix_layers == (0, 1, 2)
    assert not any(PRESETS[name].corrects for name in ("gce", "sce", "elr", "lr-m-gce", "lr-m-sce", "lr-m-elr"))


def test_peer_objects_chosen_by_the_method():
    assert isinstance(peer_loss_for(PRESETS["elr"], 4), ElrLoss) and peer_loss_for(PRESETS["elr"], 4).update_from == "output"
    assert peer_loss_for(PRESETS["lr-m-elr"], 4).update_from == "unmixed"
    gce = peer_loss_for(PRESETS["lr-m-gce"], 4)
    assert type(gce) is RobustLoss and gce.params == {"q": 0.7}
    assert gce.batch_targets(None, None, torch.tensor(Y), torch.tensor([0, 1])) is None  # never bootstraps
    with pytest.raises(ConfigError, match="cross-entropy"):
        peer_loss_for(PRESETS["lr-m-dyr-h"], 4)


def test_robust_loss_takes_no_bootstrapping_and_no_unknown_parameter():
    with pytest.raises(ConfigError, match="replaces the cross-entropy"):
        get_method("lr-m-gce", correction="hard")
    with pytest.raises(ConfigError, match="no parameter 'k'"):
        RobustLoss(4, loss="gce", params={"k": 0.5})
    with pytest.raises(ConfigError, match="loss must be one of"):
        RobustLoss(4, loss="elr")


def test_method_record_keeps_the_cross_entropy_methods_as_they_were():
    # the run folder's record of a cross-entropy method has the fields it always had (old folders resume)
    assert set(method_record(PRESETS["lr-m-dyr-h"])) == {"name", "mix_layers", "alpha", "correction", "warmup_epochs",
                                                         "reg_weight", "soft_side_weighting"}
    record = method_record(PRESETS["lr-m-sce"])
    assert record["loss"] == "sce" and record["loss_params"] == {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0}
