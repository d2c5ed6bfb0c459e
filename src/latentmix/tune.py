"""`latentmix tune`: search the eligible mix layers, alpha and loss correction on your data.

Optuna's TPE sampler proposes (layer range low-high, alpha, correction); each trial is one
training run whose per-epoch validation accuracy is reported as an intermediate value, so the
MedianPruner stops runs that trail the median of earlier trials at the same epoch. The study
lives in the same kind of store as a sweep (SQLite ``OUT/tune.db`` by default, with heartbeats),
so an interrupted search resumes, and several processes or machines may search together with
``--storage``.

Which validation accuracy
-------------------------
Synthetic noise is added to the training labels only, so the built-in data sets and files with
clean reference labels have a clean validation split: trials are ranked on it. When your file has
only its own (possibly noisy) labels, the validation labels are as noisy as the training labels and
trials are ranked on that noisy accuracy. See `validation_note` for why that still ranks settings.
"""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Optional

from latentmix.config import OPTIONS, command_line
from latentmix.errors import ConfigError
from latentmix.config import RunConfig
from latentmix.run_setup import RunSetup

DEFAULT_ALPHA_RANGE = (0.1, 32.0)
CORRECTIONS = OPTIONS["correction"].choices  # none, soft, hard


def validation_kind(dataset, config: RunConfig) -> tuple[str, str]:
    """("clean" | "noisy", why) for the validation labels trials are ranked on."""
    if config.data is None:
        return "clean", (f"the {dataset.name} validation labels are the data set's own; noise is only added to "
                         "the training labels")
    if dataset.train_labels_clean:
        return "clean", ("your file has clean reference labels, so the validation split is labelled with them "
                         "(the noisy labels are used for training only)")
    source = dataset.info.get("val_source")
    if source == "file":
        return "noisy", ("your file has only its given labels and its own val_* arrays; latentmix cannot tell "
                         "whether those validation labels are clean, so treat the ranking as on noisy labels")
    return "noisy", ("your file has only its given (possibly noisy) labels, so the held-out validation split "
                     "carries the same noise")


def expected_noisy_accuracy(accuracy: float, eta: float, num_classes: int) -> float:
    """Expected accuracy measured against labels of which a fraction `eta` was replaced by a
    uniformly drawn *other* class, for a model with accuracy `accuracy` on the true labels (noise
    independent of the model's errors): a(1 - eta) + (1 - a) eta / (C - 1)."""
    return accuracy * (1.0 - eta) + (1.0 - accuracy) * eta / (num_classes - 1)


def validation_note(num_classes: int) -> str:
    """Why accuracy on symmetrically noisy validation labels still ranks settings (stated exactly)."""
    c = num_classes
    return (
        "Ranking on noisy validation labels: if a fraction eta of the validation labels was replaced by a "
        f"uniformly drawn other class (symmetric noise, independent of the inputs), a model whose accuracy "
        f"on the true labels is a scores, in expectation, a(1 - eta) + (1 - a) eta/(C - 1) = "
        f"eta/(C - 1) + a (1 - eta C/(C - 1)) with C = {c}. That is an increasing linear function of a while "
        f"eta < (C - 1)/C, so settings keep their order in expectation. It is not a constant offset: the "
        f"gaps between settings shrink by the factor 1 - eta C/(C - 1), so small differences need more "
        "validation samples to tell apart from sampling noise; and with class-dependent (asymmetric) noise "
        "the order can change."
    )


def train_command(config: RunConfig) -> str:
    """A ready-to-run ``latentmix train ...`` line for `config` (fields left at their defaults
    omitted; the flags are the fields' own, `latentmix.config.command_line`)."""
    return " ".join(["latentmix", "train", *(shlex.quote(word) for word in command_line(config))])


def _layer_bounds(setup: RunSetup) -> tuple[int, int, str]:
    """The lowest and highest layer a trial may mix in the run's model (`RunSetup`), and the
    layers' names: layer 0 only where the training step can mix the inputs (not token ids)."""
    mixer = setup.placed.mixer
    low = 0 if setup.inputs_mixable() else 1
    if mixer.num_layers - 1 < low:
        raise ConfigError("this model has no hidden layer to mix")
    return low, mixer.num_layers - 1, mixer.describe_layers()


def _alpha_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--alpha-range must be LOW,HIGH like 0.1,32, got {text!r}") from None
    if not 0 < low <= high:
        raise ConfigError(f"--alpha-range needs 0 < LOW <= HIGH, got {text!r}")
    return low, high


def _corrections(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [v for v in values if v not in CORRECTIONS]
    if bad or not values:
        raise ConfigError(f"--corrections must be a comma-separated subset of {', '.join(CORRECTIONS)}, got {text!r}")
    return values


def _suggested_layers(trial, min_layer: int, max_layer: int) -> str:
    """The trial's layer range "low-high": two draws over the eligible layers, in order (a single
    layer when they agree), so TPE samples both ends of the range independently."""
    a = trial.suggest_int("layer_a", min_layer, max_layer)
    b = trial.suggest_int("layer_b", min_layer, max_layer)
    return f"{min(a, b)}-{max(a, b)}"


def _train_trial(trial, config: RunConfig, dataset, out_dir: Path, objective: str) -> float:
    """Train one trial's run in ``OUT/trials/trial-NNNN``, reporting each epoch's validation
    accuracy to the pruner (which may stop it), and return the accuracy trials are ranked on."""
    import optuna

    from latentmix.training import train

    trial.set_user_attr("layers", config.layers)
    trial.set_user_attr("config", config.to_dict())
    run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir.resolve()))

    def on_epoch_end(row: dict) -> None:
        trial.report(float(row["val_acc"]), int(row["epoch"]))
        if trial.should_prune():
            raise optuna.TrialPruned(f"val acc {row['val_acc']:.4f} at epoch {row['epoch']} trails the median")

    result = train(config, dataset=dataset, run_dir=run_dir, progress=False, on_epoch_end=on_epoch_end)
    summary = result.run_summary()
    trial.set_user_attr("result", summary.scalars())
    return float(summary.best_val_acc if objective == "best" else summary.last_val_acc)


def _run_trials(study, objective_fn, *, trials: int, timeout: Optional[float], progress: bool) -> None:
    """Run trials until the study holds `trials` finished ones (complete or pruned, those of an
    earlier, interrupted search included), with a bar of them and the best value so far."""
    import optuna
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trials, initial=min(done, trials), desc="tune", unit="trial", dynamic_ncols=True,
                   disable=None)  # None: no bar where stderr is no terminal

    def on_trial(study_, frozen) -> None:
        if bar is None:
            return
        bar.n = min(trials, len(study_.get_trials(deepcopy=False, states=finished)))
        with_value = [t for t in study_.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if with_value:
            bar.set_postfix(best=f"{max(t.value for t in with_value):.4f}", refresh=False)
        bar.refresh()

    if done < trials:
        try:
            study.optimize(objective_fn, n_trials=trials - done, timeout=timeout, catch=(FloatingPointError,),
                           callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished), on_trial])
        finally:
            if bar is not None:
                bar.close()
    elif bar is not None:
        bar.close()


def tune(base: RunConfig, *, trials: int, out_dir: Path, storage: Optional[str] = None, study_name: str = "tune",
         alpha_range: tuple[float, float] = DEFAULT_ALPHA_RANGE, corrections: tuple[str, ...] = CORRECTIONS,
         fixed_layers: Optional[str] = None, fixed_alpha: Optional[float] = None,
         fixed_correction: Optional[str] = None, objective: str = "best", timeout: Optional[float] = None,
         progress: bool = True, sampler_seed: Optional[int] = None, pruner=None, log=print) -> dict:
    """Search layers/alpha/correction for `base`; returns a dict with the best trial's settings,
    value, config, train command and the validation kind. Stops after `trials` finished (complete
    or pruned) trials in the study, counting those of earlier, interrupted searches."""
    import optuna
    from optuna.trial import TrialState

    from latentmix.sweep import SweepStore, display_url
    from latentmix.run_setup import build_run

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if objective not in ("best", "last"):
        raise ConfigError(f"objective must be best or last, got {objective!r}")
    # the run every trial varies, set up once as `train` sets it up (a bad --method is an error
    # now, not in every trial); the trials share its data. The trials choose the layers, so the
    # base is placed without mixing: its own layers are not checked against the model.
    setup = build_run(replace(base, layers="none"))
    dataset = setup.dataset
    min_layer, max_layer, layer_names = _layer_bounds(setup)
    kind, why = validation_kind(dataset, base)
    epochs = setup.protocol.epochs
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out_dir.resolve() / 'tune.db').as_posix()}"
    store = SweepStore(url)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=max(1, min(10, trials // 2)))
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, trials // 4)),
                                             n_warmup_steps=max(1, epochs // 4))
    with store.lock:
        study = optuna.create_study(study_name=study_name, storage=store.storage, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    study.set_user_attr("validation", kind)
    log(f"tuning on {dataset.name}: layers {layer_names}; {epochs} epochs per trial; store {display_url(url)}")
    log(f"validation: {kind} labels ({why})")
    if kind == "noisy":
        log(validation_note(dataset.num_classes))

    def objective_fn(trial) -> float:
        layers = fixed_layers if fixed_layers is not None else _suggested_layers(trial, min_layer, max_layer)
        alpha = fixed_alpha if fixed_alpha is not None else trial.suggest_float("alpha", *alpha_range, log=True)
        correction = fixed_correction or trial.suggest_categorical("correction", list(corrections))
        config = replace(base, layers=layers, alpha=alpha, correction=correction, checkpoint=False)
        return _train_trial(trial, config, dataset, out_dir, objective)

    _run_trials(study, objective_fn, trials=trials, timeout=timeout, progress=progress)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError("no trial finished (all pruned or failed); try more --trials or more --epochs")
    best = max(complete, key=lambda t: t.value)
    config = RunConfig.from_dict(best.user_attrs["config"])
    config = replace(config, checkpoint=True)
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    result = {
        "best_value": best.value, "objective": f"{objective}_val_acc", "validation": kind, "validation_why": why,
        "trial": best.number, "layers": config.layers, "alpha": config.alpha, "correction": config.correction,
        "trials_complete": len(complete), "trials_pruned": pruned, "config": config.to_dict(),
        "command": train_command(config), "storage": display_url(url), "study": study_name,
    }
    from latentmix.io import atomic_write_json

    atomic_write_json(out_dir / "best.json", result)
    return result


def add_tune_arguments(parser) -> None:
    """The search options of `latentmix tune`; the command line adds the run options of `train`
    beside them (latentmix.cli), so that this module never imports the command line."""
    parser.set_defaults(method="lr-m")
    search = parser.add_argument_group("search")
    search.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach")
    search.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    search.add_argument("--alpha-range", default="0.1,32", help="LOW,HIGH of the log-uniform alpha search")
    search.add_argument("--corrections", default="none,soft,hard", help="corrections to try")
    search.add_argument("--objective", choices=["best", "last"], default="best",
                        help="rank trials by best-epoch or last-epoch validation accuracy")
    search.add_argument("--out", help="output folder (default runs/tune-DATASET)")
    search.add_argument("--storage", help="study store URL (default sqlite:///OUT/tune.db)")
    search.add_argument("--study", default="tune", help="study name in the store")
    search.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (default: random)")
    search.add_argument("--quiet", action="store_true", help="no progress bar")


def check_search_options(sampler_seed: Optional[int], timeout: Optional[float]) -> None:
    """`--sampler-seed` is a seed Optuna's TPE sampler takes (NumPy's legacy seeding: 0..2**32-1;
    -1 was a traceback) and `--timeout` a positive number of seconds (-1 said "no trial finished")."""
    if sampler_seed is not None and not 0 <= sampler_seed <= 2**32 - 1:
        raise ConfigError(f"--sampler-seed must be a whole number in [0, 4294967295] (the TPE sampler's seed), got "
                          f"{sampler_seed}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout must be a positive number of seconds (when to stop starting trials), got "
                          f"{timeout}; omit it to run every trial")


def main(args: argparse.Namespace, base: RunConfig) -> int:
    """`latentmix tune`: `base` is the run the command line describes (its fixed dimensions)."""
    from latentmix.config_checks import check_output_folder
    from latentmix.runtime import set_threads

    check_search_options(args.sampler_seed, args.timeout)
    set_threads(args.threads, base.dataset)  # trials are single tiny runs on spirals: one thread
    fixed_layers, fixed_alpha, fixed_correction = base.layers, base.alpha, base.correction
    name = Path(base.data).stem if base.data else base.dataset
    out = check_output_folder(args.out or f"runs/tune-{name}", "--out")
    result = tune(base, trials=args.trials, out_dir=out, storage=args.storage, study_name=args.study,
                  alpha_range=_alpha_range(args.alpha_range), corrections=_corrections(args.corrections),
                  fixed_layers=fixed_layers, fixed_alpha=fixed_alpha, fixed_correction=fixed_correction,
                  objective=args.objective, timeout=args.timeout, progress=not args.quiet,
                  sampler_seed=args.sampler_seed)
    alpha = result["alpha"]
    print(f"best of {result['trials_complete']} complete trials ({result['trials_pruned']} pruned): "
          f"{result['objective'].replace('_', ' ')} {result['best_value']:.4f} on {result['validation']} validation "
          f"labels (trial {result['trial']})")
    print(f"  layers {result['layers']}, alpha {alpha:.4g}, correction {result['correction']}"
          if alpha is not None and math.isfinite(alpha) else f"  layers {result['layers']}, correction {result['correction']}")
    print("run it:")
    print(f"  {result['command']}")
    print(f"(all trials: {out}/trials/, best settings: {out}/best.json)")
    return 0
