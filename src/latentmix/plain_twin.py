"""A plain CE twin beside a run, and the model the run keeps.

Latent mixing is a regulariser that assumes the classes are convex regions of the representation:
two samples of a class mix to a point of the same class. Where they are not (classes nested as
shells, ordered classes cut from one score), a mixed point lands in another class's region
(manifold intrusion, Guo, Mao & Zhang 2019, "MixUp as Locally Linear Out-of-Manifold
Regularization") and the mixed network ends far below plain training: 3-34 points below CE on the
robustness suite's held-out data (docs/robustness-suite.md, "Data no rule was chosen on"). Nothing
one run reads tells a network held back by its regulariser from one limited by its data.

A second run can: the twin is the same run without mixing or correction (`twin_config`: the
user's data, seed, validation split, model and schedule, ``--method ce``), trained after the run in
its folder's ``plain-twin/``. Both select their checkpoint on the same noisy held-out rows, so the
run keeps the twin's model when its selection signal is higher (`latentmix.selection.
keeps_plain_twin`), its own on a tie. The choice is in result.json (`kept_model`, both scores,
`kept_val_acc`), in the summary, and `latentmix predict` / `load_run` load the kept model. The label
issues average the two noise models' P(noisy) (`with_twin_label_issues`); the noise estimate and
its doubt stay the run's.

Replayed on the suite's 43 cells before it was built (`benchmarks/plain_twin.py`, rule
`whole-model`): accuracy short of CE in 4 / 4 cells at 50 / 150 epochs instead of 7 / 5, the worst
cell -1.5 instead of -12.2 points; on the held-out data 3 / 1 instead of 12 / 13. The cost is the
twin's training: 0.74-0.77 of the run's own time on the suite's data sets (a run takes about
1.75x as long).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Optional

import numpy as np
from torch import nn

from latentmix.config import RunConfig
from latentmix.errors import ConfigError
from latentmix.methods import Method
from latentmix.protocols import Protocol, base_protocol
from latentmix.selection import keeps_plain_twin, selection_score

# The twin's run folder, inside the run's.
TWIN_FOLDER = "plain-twin"
# `kept_model` of a run with a twin: the run's own model, or the twin's.
KEPT_RUN, KEPT_TWIN = "run", TWIN_FOLDER


def is_plain(method: Method) -> bool:
    """A method with nothing for a twin to check: plain cross-entropy on one network."""
    return (not method.mix_layers and method.correction == "none" and method.loss == "ce" and method.networks == 1
            and method.selection == "none")


def built_on_a_model(part: Any) -> bool:
    """Whether the user's optimizer or scheduler is an instance (built on one model's parameters,
    which the twin cannot share) rather than None or a factory the twin can call for its own."""
    return part is not None and not callable(part)


def wants_plain_twin(config: RunConfig, method: Method, protocol: Protocol, *, distributed: bool, optimizer: Any,
                     scheduler: Any, model: Optional[nn.Module]) -> bool:
    """Whether the run trains a plain CE twin: `config.plain_twin` where given, else the protocol's
    choice (a user's own data) for a method of the paper's family (latent mixing, the loss
    correction) on one network, with the default optimizer or the user's factories. A twin asked for
    where it cannot be trained is a `ConfigError` naming the reason and the fix."""
    asked = config.plain_twin
    if asked is False:
        return False
    reasons = []
    if is_plain(method):
        reasons.append(f"--method {config.method} is plain CE already")
    if distributed:
        reasons.append("a data-parallel run trains one model at a time")
    if built_on_a_model(optimizer) or built_on_a_model(scheduler):
        reasons.append("your optimizer or scheduler is an instance built on the run's own model (pass a factory, "
                       "e.g. optimizer=lambda params: torch.optim.AdamW(params), and the twin builds its own)")
    if model is not None and method.networks == 2:
        reasons.append("your model is the two-network method's pair")
    if asked is None:
        family = method.loss == "ce" and method.networks == 1 and method.selection == "none"
        return protocol.plain_twin and family and not reasons
    if reasons:
        raise ConfigError(f"--plain-twin (plain_twin=True) cannot train a twin here: {'; '.join(reasons)}; "
                          "leave it out or pass --no-plain-twin")
    return True


def twin_config(config: RunConfig) -> RunConfig:
    """The twin's settings: the run's, as ``--method ce`` (no mixing, no correction, none of the
    method's own settings), without a twin of its own."""
    return replace(config, method="ce", layers=None, alpha=None, correction=None, reg_weight=None,
                   soft_side_weighting=None, plain_twin=False).validate()


def twin_model(model: Optional[nn.Module], config: RunConfig) -> Optional[nn.Module]:
    """The twin's network: a copy of the user's model as given, before the run trains it, where a
    twin may be trained (asked for, or the default of the run's protocol); else None, as when the
    twin builds the run's default model from its settings. Taken before the run is set up, since
    the run trains the model in place."""
    may_train = config.plain_twin is True or (config.plain_twin is None and base_protocol(config).plain_twin)
    return copy.deepcopy(model) if model is not None and may_train else None


def keep_better(result: Any, twin: Any, twin_failed: Optional[str] = None) -> Any:
    """`result` (a `latentmix.result.RunResult`) with its twin's and the kept model's figures: the
    twin's model is kept when its selection signal at its selected epoch is higher than the
    run's (`keeps_plain_twin`), and the label issues are both noise models' (`with_twin_label_issues`).
    A twin that failed (`twin` None, `twin_failed` why: plain CE diverged) leaves the run its own
    model and label issues, and says so."""
    score = selection_score(result.metrics, result.selected_epoch)
    twin_score = selection_score(twin.metrics, twin.selected_epoch) if twin is not None else None
    kept = twin if twin is not None and keeps_plain_twin(score, twin_score) else result
    result.twin, result.twin_failed = twin, twin_failed
    result.kept_model = KEPT_TWIN if kept is twin else KEPT_RUN
    result.selection_score, result.twin_selection_score = score, twin_score
    if twin is not None:
        with_twin_label_issues(result, twin)
    return result


def averaged_view(own: dict, twin: dict) -> dict:
    """One sample view (`p_noisy` and `loss` / `losses` arrays, with the rest of `own`'s fields)
    from two noise models of the same samples: each sample's P(noisy) and loss the mean of the two,

        p = (p_run + p_twin) / 2,

    the two posteriors weighted equally (a model average of two estimates of the same event: the
    label is wrong). Equal P(noisy) are then ranked by the mean loss, as one run ranks by its own."""
    averaged = dict(own)
    for key in ("p_noisy", "losses", "loss"):
        if key in own and own[key] is not None:
            averaged[key] = (np.asarray(own[key], dtype=np.float64) + np.asarray(twin[key], dtype=np.float64)) / 2
    return averaged


def with_twin_label_issues(result: Any, twin: Any) -> Any:
    """`result` whose label issues (every sample's P(noisy) and loss, the validation rows of the
    user's file included) average its own noise model's and its twin's (`averaged_view`); the
    result.json's detection figures and flagged counts follow, and `twin_label_issues_epoch` says
    which of the twin's epochs took part.

    Why both: each network's losses miss wrong labels the other finds. Where mixing holds the run
    back (classes that are not convex regions) its losses hardly tell wrong labels from hard ones
    and the plain twin's do; where correction helps, the run's do better. Replayed on the
    robustness suite's three sets before it was built (`benchmarks/twin_detection.py`), the average
    left fewer cells below CE's or cleanlab's detection AUC than the run's own ranking on each
    (docs/robustness-suite.md, "Label issues from both")."""
    own = {"p_noisy": result.p_noisy, "losses": result.losses}
    averaged = averaged_view(own, {"p_noisy": twin.p_noisy, "losses": twin.losses})
    result.p_noisy, result.losses = averaged["p_noisy"], averaged["losses"]
    if result.extra_rows and twin.extra_rows:  # the validation rows of the user's file
        result.extra_rows = averaged_view(result.extra_rows, twin.extra_rows)
    result.twin_label_issues_epoch = twin.label_issues_epoch
    return result
