"""One training loop for every method, read top to bottom like the paper's algorithm.

For each epoch (1-based, as in the reference):
    set the learning rate of the step schedule
    for each batch of the shuffled training set:
        augment the batch (training transform)
        if bootstrapping (correction on and past warm-up):
            the model's own prediction on the un-mixed batch (the bootstrapping target, detached)
            each sample's P(noisy) from its current loss and the last fitted noise model
        draw the mix (layer k from S, lam ~ Beta(alpha, alpha), a permutation)
        mixed forward -> loss (mixed CE, or bootstrapping + prior regularizer) -> SGD step
    track: one pass over the training set (eval mode, no gradients) gives each sample's loss
    fit the noise model (two-component Beta mixture) on those losses -> P(noisy) per sample
    evaluate on the validation set; log the epoch; checkpoint

The step is made of the objects a user's own loop holds, and of nothing else:
`latentmix.mixing.LatentMixup` draws each step's plan from the run's mixing stream and runs the
mixed forward; `latentmix.correction.LossCorrection` keeps the noise model, gives each batch its
bootstrapping targets, computes the loss and fits a fresh model each epoch. So the loop in
docs/own-loop.md and the one `train` runs are the same code. `train` is the epochs above; `Run`
holds what they use (the run as `latentmix.run_setup.build_run` sets it up, the same set-up
`latentmix detect`, the vectorized population and `latentmix tune` use; a restored checkpoint) and
the bookkeeping (metrics rows in a `latentmix.run_log.RunLog`, the selected checkpoint, the
`latentmix.result.RunResult`; the run folder's files are written by
`latentmix.run_folder.RunFolder`). The tracking pass and the evaluation are in
`latentmix.tracking`. The data are sliced from tensors in memory or read by a DataLoader
(`latentmix.data.streamed.read_batches`).

Sources: paper Appendix A/B (protocols), Arazo et al. 2019 reference `train.py` (warm-up, loss
tracking, per-batch P(noisy)), Manifold Mixup reference (mixing). Where this code chooses between
reference behaviours the choice is a field of `RunConfig`, and docs/algorithm.md says why.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from latentmix.config import RunConfig
from latentmix.data import Dataset, index_inputs, subset_inputs
from latentmix.data.streamed import read_batches
from latentmix.distributed import DistContext, single_process
from latentmix.errors import ConfigError, TrainingDiverged
from latentmix.methods import method_record
from latentmix.progress import EpochProgress
from latentmix.protocols import first_milestone, lr_at_epoch
from latentmix.result import RunResult, per_sample_results, test_figures
from latentmix.run_folder import CHECKPOINT_NAME, RunFolder, RunTiming, noise_model_entry, noise_model_of, run_fingerprints
from latentmix.run_log import RunLog
from latentmix.run_setup import RunSetup, RunStreams, build_run, describe_optimizer, resolve_device
from latentmix.selection import (
    NOT_STARTED, Collapse, LearningEnd, MemorisationCheck, correction_collapse, early_learning_end, estimate_noise_rate,
    memorisation_after, memorisation_check, never_learnt, noise_estimate_doubt, selected_epoch,
)
from latentmix.tracking import (
    Tracked, epoch_view, evaluate, fit_run_noise_model, track_training_losses, tracking_pass, tracks_at,
)
from latentmix.noise_model import detection_metrics
from latentmix.plain_twin import TWIN_FOLDER, keep_better, twin_config, twin_model, wants_plain_twin


def train(
    config: RunConfig,
    *,
    dataset: Optional[Dataset] = None,
    model: Optional[nn.Module] = None,
    mix_points: Optional[Sequence] = None,
    run_dir: Optional[str | os.PathLike] = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: Optional[Callable[[dict], None]] = None,
    distributed: Optional[DistContext] = None,
    optimizer: Any = None,
    scheduler: Any = None,
) -> RunResult:
    """Train one run (`config`; a `dataset` and `model` with its `mix_points` may be given, else they
    are built from `config`) and return its `RunResult`. The epochs below are the algorithm, the loop
    of docs/own-loop.md; `Run` holds what they use and the bookkeeping, and says what the other
    arguments do. A run with a plain CE twin (`latentmix.plain_twin`: by default a mixing or
    correcting method on your own data) then trains the twin, itself as `--method ce`, and keeps
    the model that scores higher on the noisy validation split."""
    # the network a plain CE twin starts from: the user's model as given, before the run trains it
    initial_model = twin_model(model, config)
    run = Run(config, dataset=dataset, model=model, mix_points=mix_points, run_dir=run_dir, resume=resume,
              overwrite=overwrite, distributed=distributed, optimizer=optimizer, scheduler=scheduler)
    method, protocol, dist, device = run.method, run.protocol, run.dist, run.device
    mixup, correction, log = run.mixup, run.correction, run.log
    bar = EpochProgress(range(run.start_epoch, protocol.epochs + 1), enabled=progress and dist.is_main,
                        desc=f"{method.name} noise={config.noise:g} seed={config.seed}", corrects=method.corrects)
    run.model.train()
    for epoch in bar:
        epoch_started = time.perf_counter()
        # the end of early learning, read off the run's own signals so far (None: not yet), and (auto
        # warm-up) whether the network had begun to memorise labels by then (None: not known)
        learning_end = run.learning_end(log.metrics)
        check = run.memorisation(log.metrics, learning_end)
        # (auto warm-up) a correction that left its network no better than a constant prediction is
        # stopped for good (None: it did not)
        collapse = run.collapse(log.metrics)
        # a network that memorised nothing, or that its correction collapsed, trains on plainly, as CE
        # would: no mixing, no correction (`Run.trains_plainly`)
        plainly = run.trains_plainly(check) or collapse is not None
        # the lr decays at the end of early learning; a collapse shows that end came too early, and the
        # schedule's own milestones apply again
        lr = run.set_lr(epoch, learning_end if collapse is None else None)
        if plainly and epoch == (learning_end if collapse is None else collapse.epoch) + 1:
            log.restart_posterior_mean()  # the label issues average the plain epochs' P(noisy) only
        # bootstrapping waits for the warm-up: a fixed number of epochs, or (auto) until early learning
        # ends, and then only if the network had begun to memorise labels (else never: `Run.warmup_end`)
        warmup_end = run.warmup_end(learning_end, check)
        correction.enabled = warmup_end is not None and epoch > warmup_end and collapse is None
        bootstrapping = correction.bootstrapping
        # DivideMix's warm-up trains un-mixed, and so does a network that memorised nothing; every other run mixes
        mixup.enabled = correction.mixes_now and not plainly
        if bootstrapping and run.tracking_logits and run.tracked is None:
            run.observe(run.track_training_set(), for_fit=False)  # resumed without the previous epoch's pass

        # ---- each batch: augment -> bootstrapping targets (None in the warm-up) -> mixed forward -> loss -> step
        # (data-parallel: every process draws the same global batches and mixing draws, augments
        # the whole batch, and trains on its shard; mixup partners come from within the shard)
        loss_sum = torch.zeros((), device=device)  # summed on the device, read once at the end
        batches = dist.even_batches(batch_indices(run.trained, protocol.batch_size, run.streams.order))
        mixup.start_epoch(len(batches), protocol.batch_size)
        for index, batch in zip(batches, read_batches(run.dataset.train_inputs, batches, device)):
            shard = dist.shard(len(index))
            x, y = index_inputs(run.augment(batch), shard), run.noisy_labels[index[shard]]
            plan = mixup.next_plan(y.shape[0], offset=shard.start, device=device)
            targets = correction.batch_targets(run.forward_model, x, y, index[shard], autocast=run.autocast)
            with run.autocast():
                logits, _ = mixup(x, plan)
            loss = correction.loss(logits, y, plan, targets)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            loss_sum += loss.detach() * y.shape[0]
        if run.scheduler is not None:
            run.scheduler.step()

        # ---- evaluate: validation accuracy and the noisy-validation accuracy a checkpoint is selected by
        row, val_tracked = run.evaluate_epoch(epoch, lr, bootstrapping, loss_sum, sum(len(index) for index in batches))

        # ---- track each sample's loss; fit a fresh noise model (bootstrapping keeps the last that separated)
        view = None
        if tracks_at(epoch, config, method, protocol):
            run.tracked = run.track_training_set()
            run.observe(run.tracked)
            view = epoch_view(run.tracked, correction.end_epoch(), run.trained_np, val_tracked)
            row.update(run.tracking_metrics(view))

        # ---- log the epoch; checkpoint
        log.add(row, view, run.model)
        run.timing.epoch_done(epoch, time.perf_counter() - epoch_started)
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(f"training diverged at epoch {epoch} (loss {row['train_loss']}); lower --lr")
        bar.epoch_done(row)  # a terminal's bar, or one line per epoch in a log
        run.save_epoch(epoch)
        if on_epoch_end is not None:
            on_epoch_end(row)
    if not run.trains_twin:
        return run.finish()
    # the same run without mixing or correction (`latentmix.plain_twin`): the run keeps the model that
    # scores higher on the noisy validation split; result.json is written once both are known
    result = run.finish(write_result=False)
    # (your model's copy mixes nothing: it needs no mix points; a built model names its own)
    # (your optimizer and scheduler factories, if any, build the twin's own)
    try:
        twin = train(twin_config(config), dataset=dataset, model=initial_model, run_dir=run.twin_dir, resume=resume,
                     overwrite=overwrite, progress=progress, mix_points=() if initial_model is not None else None,
                     optimizer=optimizer, scheduler=scheduler)
    except TrainingDiverged as error:  # plain CE diverged where the run did not: the run keeps its own model
        return run.keep_better(result, None, twin_failed=f"the plain CE twin {error}")
    return run.keep_better(result, twin)


def batch_indices(positions: torch.Tensor, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled mini-batches of the samples at `positions` (the ones trained on; the
    last batch may be smaller, as a DataLoader gives it)."""
    order = torch.from_numpy(rng.permutation(len(positions))).to(positions.device)
    return list(positions[order].split(batch_size))


class Run:
    """One run's set-up and bookkeeping, around the epochs `train` runs: the run as `build_run`
    sets it up (settings, protocol, noisy labels and the noisy-validation split, model, random
    streams) placed for training (compiled, channels-last), the transforms, the optimizer,
    `LatentMixup` and `LossCorrection`, a checkpoint restored; then the per-epoch evaluation, the
    tracking pass, the run folder's files (through `RunFolder`) and the `RunResult`.

    `train`'s arguments, which `Run` takes (but `on_epoch_end`, which `train` calls): with `run_dir`,
    the config, per-epoch metrics, `result.json`, `label_issues.csv`, `timing.json` and a per-epoch
    checkpoint are written there (atomically); `resume=True` continues the run the folder holds from
    its last complete epoch, `overwrite=True` replaces it, and without either a folder that holds a
    run is refused (`latentmix.run_folder`). `on_epoch_end(row)` sees each epoch's row (the sweep
    runner reports intermediate values through it).

    `distributed` (from `latentmix.distributed.distributed_run` under torchrun) trains the run
    data-parallel: each process takes its shard of every global batch, DDP averages the gradients,
    and only the main process writes the run folder (docs/distributed.md).

    `optimizer` / `scheduler` replace the protocol's SGD and step schedule (`build_optimizer`): an
    instance built on the model's parameters, or a factory (parameters -> optimizer, optimizer ->
    scheduler). Either one turns the protocol's lr schedule off; the scheduler is stepped once after
    each epoch and checkpointed with the run."""

    def __init__(self, config: RunConfig, *, dataset: Optional[Dataset], model: Optional[nn.Module],
                 mix_points: Optional[Sequence], run_dir: Optional[str | os.PathLike], resume: bool, overwrite: bool,
                 distributed: Optional[DistContext], optimizer: Any, scheduler: Any):
        started = time.perf_counter()
        self.config = config
        dist = distributed or single_process(resolve_device(config.device))
        self.run_folder = run_folder = RunFolder(run_dir, writer=dist.is_main) if run_dir is not None else None
        if run_folder is not None:  # refuse an occupied folder before the data load
            run_folder.check_command(resume=resume, overwrite=overwrite)
        # the run set up and placed as every command sets it up (`build_run`)
        self.setup = setup = build_run(config, dataset=dataset, model=model, mix_points=mix_points, distributed=dist,
                                       optimizer=optimizer, scheduler=scheduler)
        placed = setup.placed
        self.dist, self.device = dist, placed.device
        self.method, self.protocol, self.warmup = setup.method, setup.protocol, setup.warmup
        self.labels, self.streams, self.dataset, self.model = setup.labels, setup.streams, setup.dataset, setup.model
        self.autocast, self.forward_model = placed.autocast, placed.forward_model
        self.augment, self.eval_transform, self.track_transform = (placed.augment, placed.eval_transform,
                                                                   placed.track_transform)
        self.optimizer, self.scheduler, self.own_schedule = placed.optimizer, placed.scheduler, placed.own_schedule
        # the loss correction, keyed by training-set position: the tracked losses of the samples
        # trained on, the noise model fitted to them each epoch, the bootstrapping targets per batch
        self.correction = placed.correction
        self.tracking_logits = config.bootstrap_forward == "tracked"  # only the "tracked" targets read them
        device = self.device
        self.noisy_labels = noisy_labels = setup.labels.labels.to(device)
        self.is_noisy = setup.labels.is_noisy.to(device)
        self.trained_np, self.holdout_np = setup.trained, setup.holdout
        self.trained = torch.from_numpy(self.trained_np).to(device)
        self.holdout = torch.from_numpy(self.holdout_np).to(device)
        self.holdout_inputs = subset_inputs(self.dataset.train_inputs, self.holdout) if len(self.holdout_np) else None
        # the selection signal's sample size, its chance level, and whether its labels are the given ones
        self.select_size, self.chance, self.select_is_noisy = selection_signal(setup)
        # what the most common given label alone scores on the samples trained on (`collapse`)
        self.train_chance = chance_level(noisy_labels[self.trained])
        self.run_path = Path(run_dir) if run_dir is not None else None
        self.start_epoch = 1
        self.tracked: Optional[Tracked] = None
        self.log = RunLog(holdout_size=self.select_size, chance=self.chance)
        if run_folder is not None:  # accepted only if it is a new run, or the one the folder holds
            state = run_folder.accept(run_record(setup), resume=resume, overwrite=overwrite, device=device,
                                      noisy_labels=noisy_labels)
            if state is not None:  # every process resumes from the same checkpoint
                self._restore(state)
        self.timing = (run_folder.start_timing(self.start_epoch, started, str(device))
                       if run_folder is not None and run_folder.writer
                       else RunTiming(started=started, first_epoch=self.start_epoch, device=str(device)))
        # data-parallel: the mixed forward runs through DDP, wrapped after the checkpoint is loaded
        # (DDP broadcasts rank 0's weights); the run's mixing stream draws the plans
        self.mixup = placed.mixup
        self.mixup.mixer = dist.wrap_mixer(placed.mixer)
        # a plain CE twin trained after the run, in its folder's plain-twin/ (`latentmix.plain_twin`)
        self.trains_twin = wants_plain_twin(config, self.method, self.protocol, distributed=dist.is_distributed,
                                            optimizer=optimizer, scheduler=scheduler, model=model)
        self.twin_dir = self.run_path / TWIN_FOLDER if self.trains_twin and self.run_path is not None else None
        if self.twin_dir is not None:  # a twin folder that holds another run is refused now, not after the run
            RunFolder(self.twin_dir).check_command(resume=resume, overwrite=overwrite)
        elif overwrite and run_folder is not None and run_folder.writer:  # the replaced run's twin goes with it
            stale = RunFolder(self.run_path / TWIN_FOLDER)
            for name in stale.present():
                stale.file(name).unlink()

    def _restore(self, state: dict) -> None:
        """Continue from a verified checkpoint: model, optimizer, streams, scheduler, the metrics so
        far, the noise model, the last tracking pass (not redone: it would draw augmentations), the
        label view and the selected model."""
        _restore_checkpoint(state, self.model, self.optimizer, self.streams, self.run_folder)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.log.metrics = state["metrics"]
        self.correction.noise_model = noise_model_of(state)
        if state.get("tracked") is not None:
            self.tracked = Tracked(state["tracked"]["losses"].to(self.device), state["tracked"]["logits"].to(self.device))
            self.observe(self.tracked, for_fit=False)
        self.correction.epochs_done = state["epoch"]
        self.correction.load_run_state(state, self.device)  # a peer loss's per-sample state (ELR's targets)
        self.log.snapshot = state.get("label_snapshot")
        self.log.posterior_sums = state.get("posterior_sums")
        self.log.warmup_snapshot = state.get("warmup_snapshot")
        self.log.selected_state = self.run_folder.load_selected(self.device)
        self.start_epoch = state["epoch"] + 1

    # ---- per epoch ---------------------------------------------------------------------------
    def learning_end(self, metrics: list[dict]) -> Optional[int]:
        """The last epoch of early learning read off the metric rows so far (None: not yet)."""
        decision = self.learning_end_decision(metrics)
        return None if decision is None else decision.epoch

    def learning_end_decision(self, metrics: list[dict]) -> Optional[LearningEnd]:
        """The end of early learning and why (`latentmix.selection.early_learning_end`: only once
        the network is above chance on the noisy held-out split), at the latest at the first lr
        decay."""
        return early_learning_end(metrics, holdout_size=self.select_size, chance=self.chance,
                                  latest=first_milestone(self.protocol))

    def memorisation(self, metrics: list[dict], learning_end: Optional[int]) -> Optional[MemorisationCheck]:
        """With the automatic warm-up of a bootstrapping method: whether the network had begun to
        memorise labels at the last epoch of early learning (`latentmix.selection.memorisation_check`),
        or, where it had not, at a later epoch of the plain training after it
        (`latentmix.selection.memorisation_after`: the correction starts after that epoch); None where
        that cannot be told (a fixed warm-up, a method without bootstrapping, early learning not over,
        no held-out split with the given labels)."""
        if self.warmup is not None or not self.method.corrects or learning_end is None:
            return None
        holdout_key = "select_acc" if self.select_is_noisy else "select_acc_given"
        row = next((r for r in metrics if int(r["epoch"]) == int(learning_end)), None)
        if row is None or row.get("train_acc_noisy") is None or row.get(holdout_key) is None:
            return None
        at_end = memorisation_check(row["train_acc_noisy"], row[holdout_key], train_size=len(self.trained_np),
                                    holdout_size=self.select_size, epoch=int(learning_end))
        return memorisation_after(metrics, at_end, train_size=len(self.trained_np), holdout_size=self.select_size,
                                  holdout_key=holdout_key)

    def warmup_end(self, learning_end: Optional[int], check: Optional[MemorisationCheck]) -> Optional[int]:
        """The last epoch before bootstrapping: the fixed warm-up, or the epoch by which the network
        had begun to memorise (`check`, `memorisation`: the end of early learning, or a later epoch
        of the plain training after it); None: not (yet) bootstrapping."""
        if self.warmup is not None:
            return self.warmup
        if self.trains_plainly(check):
            return None
        return learning_end if check is None else check.epoch

    @staticmethod
    def trains_plainly(check: Optional[MemorisationCheck]) -> bool:
        """Whether the run trains on as plain CE from the end of early learning: the network had
        memorised no label by then (`check`; until a later epoch shows it has begun to,
        `latentmix.selection.memorisation_after`), so there is nothing for the correction to undo, and
        latent mixup, the regulariser against memorising wrong labels, has nothing to hold back
        while it costs a network limited by its capacity (measured on the robustness suite's weak
        tanh network: LR-M 2-25 points below CE; docs/robust-defaults.md). The lr decays at the end
        of early learning as in every run of the `arrays` protocol, CE's included: keeping the high
        rate instead was measured and lost where the network goes on to memorise (the imbalanced and
        tabular data sets: 1-7 points below CE), since under class-dependent noise the noisy
        validation split rewards learning the flips and cannot guard the run. So did training the
        plain phase as a fresh CE run (the protocol's rate again, decayed at the plain phase's own end
        of early learning), measured on 14 cells (2 seeds, 50 epochs, 2026-12-07): it repairs the weak
        tanh network (`weak-easy` sym60 67.8 -> 80.1, class30 76.2 -> 79.6; CE 79.9, 79.6) but costs
        the data sets that memorise (`tabular-csv` sym40 90.8 -> 89.9, sym60 90.9 -> 90.0;
        `imbalanced` class30 86.4 -> 83.1). So did three variants that kept the schedule's rate for the
        plain phase until its own end of early learning and checked memorisation again (measured on
        the 64 runs that train plainly, 2 seeds, 50 epochs, 2026-12-07; docs/robustness-suite.md, "A
        plain phase at the schedule's rate"): each repairs `weak-easy` (sym60 67.8 -> 80.1) and costs
        where the plain network memorises class-dependent flips, which the held-out labels share and
        no check can see (`imbalanced` class30 86.4 -> 83.1 in every variant, `images-npz` sym40 72.7 ->
        68.5-71.0); the best of them, `acc` short 8 -> 7 and worst cell -12.2 -> -3.3 at 50 epochs
        (`auc` short 13 -> 16), is worse on every check at 150 (`acc` short 7 -> 9, worst -2.0 -> -4.4)."""
        return check is not None and not check.memorising

    def collapse(self, metrics: list[dict]) -> Optional[Collapse]:
        """With the automatic warm-up of a bootstrapping method: the epoch at which the correction
        left its network agreeing with its training labels no better than a constant prediction
        (`latentmix.selection.correction_collapse`), or None. From the next epoch on the run stops
        correcting and trains on plainly, as CE: the network's predictions can stand in for no label,
        and the end of early learning that started the correction came too early to be trusted, so
        the lr is back on the schedule's own milestones. The guard (`finish`) then picks the
        selected model among the warm-up and the plain epochs. The paper's protocols, with their
        fixed warm-ups, are left as the references run them."""
        if self.warmup is not None or not self.method.corrects:
            return None
        return correction_collapse(metrics, chance=self.train_chance, train_size=len(self.trained_np))

    def set_lr(self, epoch: int, learning_end: Optional[int]) -> float:
        """The epoch's learning rate: the user's optimizer's own, or the protocol's step schedule."""
        if self.own_schedule:
            return self.optimizer.param_groups[0]["lr"]
        lr = lr_at_epoch(self.protocol, epoch, learning_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def track_training_set(self) -> Tracked:
        return track_training_losses(self.forward_model, self.dataset.train_inputs, self.noisy_labels,
                                     self.track_transform, self.protocol.eval_batch_size, self.autocast, dist=self.dist)

    def observe(self, tracked: Tracked, for_fit: bool = True) -> None:
        """Hand a tracking pass of the samples trained on to the loss correction."""
        self.correction.observe(self.trained, *tracking_pass(tracked, self.noisy_labels, self.trained,
                                                             self.tracking_logits), for_fit=for_fit)
        if tracked.network_losses is not None:  # a pair's networks, each on its own (DivideMix's GMMs)
            self.correction.observe_networks(self.trained, tracked.network_losses[:, self.trained], for_fit=for_fit)

    def evaluate_epoch(self, epoch: int, lr: float, bootstrapping: bool, loss_sum: torch.Tensor,
                       num_seen: int) -> tuple[dict, Optional[Tracked]]:
        """The epoch's metrics row so far: validation accuracy (with the validation rows' losses
        against their given labels when they are the user's, one pass for both), the accuracy a
        checkpoint is selected by (the noisy holdout's, or the user's validation set's) and, when
        the data have a test set, its accuracy (`test_acc`: only scored, it selects nothing)."""
        dataset, protocol, dist = self.dataset, self.protocol, self.dist
        val_tracked = None
        if dataset.val_given_labels is not None:  # the validation rows are the user's: scored too
            val_tracked = track_training_losses(self.forward_model, dataset.val_inputs, dataset.val_given_labels,
                                                self.eval_transform, protocol.eval_batch_size, self.autocast, dist=dist)
            val_acc = (val_tracked.predictions == dataset.val_labels).float().mean()
        else:
            val_acc = evaluate(self.forward_model, dataset.val_inputs, dataset.val_labels, self.eval_transform,
                               protocol.eval_batch_size, self.autocast, dist=dist)
        row = {"epoch": epoch, "lr": lr, "train_loss": float(dist.all_reduce_sum(loss_sum)) / num_seen,
               "val_acc": float(val_acc), "select_acc": None, "train_acc_noisy": None, "train_acc_clean": None,
               "bootstrapping": bootstrapping}
        if self.holdout_inputs is not None:
            row["select_acc"] = float(evaluate(self.forward_model, self.holdout_inputs, self.noisy_labels[self.holdout],
                                               self.eval_transform, protocol.eval_batch_size, self.autocast, dist=dist))
        elif dataset.val_selects:
            row["select_acc"] = row["val_acc"]
            if val_tracked is not None and not self.select_is_noisy:
                # the user's split scored against clean labels: its agreement with the labels the file
                # gives those rows too, what the memorisation check compares training agreement with
                given = dataset.val_given_labels.to(val_tracked.predictions.device)
                row["select_acc_given"] = float((val_tracked.predictions == given).float().mean())
        if dataset.test_labels is not None:  # a key only then: a run without a test set keeps its rows
            row["test_acc"] = float(evaluate(self.forward_model, dataset.test_inputs, dataset.test_labels,
                                             self.eval_transform, protocol.eval_batch_size, self.autocast, dist=dist))
        return row, val_tracked

    def tracking_metrics(self, view: dict) -> dict:
        """The metrics of a tracking pass (`self.tracked`): training accuracy against the given and
        (when known) the clean labels, the flagged share and separation of the noise model, and
        the detection AUC / precision / recall when the wrong labels are known."""
        trained, hits = self.trained, self.tracked.predictions[self.trained]
        row = {"train_acc_noisy": float((hits == self.noisy_labels[trained]).float().mean())}
        clean_known = self.dataset.train_labels_clean
        if clean_known:
            row["train_acc_clean"] = float((hits == self.dataset.train_labels[trained]).float().mean())
        row["flagged_share"], row["separation"] = view["flagged_share"], view["separation"]
        if clean_known and bool(self.is_noisy[trained].any()):
            detection = detection_metrics(view["p_noisy"][self.trained_np], self.is_noisy[trained].cpu().numpy())
            row.update(detection_auc=detection["auc"], detection_precision=detection["precision"],
                       detection_recall=detection["recall"])
        return row

    def save_epoch(self, epoch: int) -> None:
        """The run folder after an epoch: metrics.csv, the selected model when this epoch is the
        selected one, the checkpoint (everything a resume needs) and the timing. Runs too short to
        need it (a grid of tiny models, `checkpoint=False`) write metrics.csv once at the end."""
        folder = self.run_folder
        if folder is None or not folder.writer or not self.config.checkpoint:
            return
        log, correction = self.log, self.correction
        folder.write_metrics(log.metrics)
        if log.selected_state is not None and log.metrics[-1]["epoch"] == selected_epoch(log.metrics):
            folder.save_selected(log.selected_state)
        folder.save_checkpoint({
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            **({"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}),
            "streams": self.streams.state_dict(), "metrics": log.metrics, "noisy_labels": self.noisy_labels.cpu(),
            "noise_model": noise_model_entry(correction.noise_model),
            "tracked": None if self.tracked is None else {"losses": self.tracked.losses.cpu(),
                                                          "logits": self.tracked.logits.cpu()},
            "label_snapshot": log.snapshot, "posterior_sums": log.posterior_sums, "warmup_snapshot": log.warmup_snapshot,
            **correction.run_state(),
        })
        folder.write_timing(self.timing)

    def bootstrap_reason(self, decision: Optional[LearningEnd], check: Optional[MemorisationCheck],
                         started: bool) -> Optional[str]:
        """Why bootstrapping started when it did (the fixed warm-up, or the signal that ended early
        learning and the memorisation that had begun by then), or why it never did (`NOT_STARTED`
        and the memorisation check); None for a run that had no decision to make."""
        if started and self.warmup is not None:
            return f"after the fixed warm-up of {self.warmup} epochs"
        if not started and (check is None or check.memorising):
            return None
        reason = "early learning ended: " + (decision.reason if decision is not None else "at the first lr decay")
        if check is not None:
            reason += f"; {check.reason}"
        elif self.method.corrects:  # it could not tell: say so rather than imply it looked
            reason += ("; whether the network had begun to memorise was not checked: no held-out rows with "
                       "their given labels to compare its training agreement with")
        return reason if started else NOT_STARTED + reason

    # ---- the end -----------------------------------------------------------------------------
    def finish(self, write_result: bool = True) -> RunResult:
        """The `RunResult` (best / last / selected accuracy, the per-sample view kept for the label
        issues, the noise-rate estimate), and the run folder's result files (result.json only with
        `write_result`: a run with a twin writes it in `keep_better`, once the twin is known)."""
        log, metrics = self.log, self.log.metrics
        if log.snapshot is None:  # a checkpoint from before label snapshots: the final per-sample view
            tracked = self.track_training_set()
            noise_model = fit_run_noise_model(self.config, tracked.losses[self.trained])
            log.snapshot = {"epoch": metrics[-1]["epoch"], "first_epoch": metrics[-1]["epoch"],
                            **epoch_view(tracked, noise_model, self.trained_np, None)}
        val_accs = [row["val_acc"] for row in metrics]
        best_index = int(np.argmax(val_accs))
        chosen = selected_epoch(metrics)
        decision = self.learning_end_decision(metrics)
        learning_end = metrics[-1]["epoch"] if decision is None else decision.epoch
        bootstrap_start = next((int(r["epoch"]) for r in metrics if r["bootstrapping"]), None)
        check = self.memorisation(metrics, None if decision is None else decision.epoch)
        collapse = self.collapse(metrics)
        # the guard: a correction that does not beat its own warm-up on the selection signal is not
        # kept; the selected model is then a warm-up epoch's, and so are the label issues. A collapsed
        # correction is not kept either: the selected model is a warm-up or a plain epoch's after it.
        correction_kept = None
        if bootstrap_start is not None and chosen is not None:
            correction_kept = bootstrap_start <= chosen and (collapse is None or chosen < collapse.epoch)
            if chosen < bootstrap_start and log.warmup_snapshot is not None:
                log.snapshot = log.warmup_snapshot
        estimate = estimate_noise_rate(metrics, learning_end)
        self.timing.stop()
        result = RunResult(
            config=self.config, method=self.method, metrics=metrics,
            best_val_acc=val_accs[best_index], last_val_acc=val_accs[-1], best_epoch=metrics[best_index]["epoch"],
            **per_sample_results(log.snapshot, self.dataset, self.labels, self.holdout_np),
            run_dir=self.run_path, model=self.model, wall_time_s=self.timing.total_s(),
            epoch_time_s=self.timing.epoch_times(), selected_epoch=chosen,
            selected_val_acc=None if chosen is None else next(r["val_acc"] for r in metrics if r["epoch"] == chosen),
            label_issues_epoch=int(log.snapshot["epoch"]),
            label_issues_from_epoch=log.snapshot.get("first_epoch"),
            estimated_noise_rate=estimate,
            bootstrap_start_epoch=bootstrap_start,
            bootstrap_start_reason=self.bootstrap_reason(decision, check, started=bootstrap_start is not None),
            correction_kept=correction_kept, correction_stopped=None if collapse is None else collapse.reason,
            noise_estimate_doubt=noise_estimate_doubt(
                metrics, estimate, None if decision is None else decision.epoch, holdout_size=self.select_size,
                holdout_is_noisy=self.select_is_noisy, train_size=len(self.trained_np), chance=self.chance),
            training_note=never_learnt(metrics, holdout_size=self.select_size, chance=self.chance),
            selected_model_state=log.selected_state,
            **test_figures(metrics, chosen),
        )
        if self.run_folder is not None:
            self.run_folder.write_metrics(metrics)
            self.run_folder.write_label_issues(result)
            if write_result:
                self.run_folder.write_result(result.summary())
            self.run_folder.write_timing(self.timing)
        return result

    def keep_better(self, result: RunResult, twin: Optional[RunResult], twin_failed: Optional[str] = None) -> RunResult:
        """The run's result with its twin's (`latentmix.plain_twin.keep_better`: the model that
        scores higher on the noisy validation split is kept, the label issues average both noise
        models; the run's own when the twin failed), its label_issues.csv and result.json."""
        result = keep_better(result, twin, twin_failed)
        if self.run_folder is not None:
            if twin is not None:  # the label issues now average both noise models
                self.run_folder.write_label_issues(result)
            self.run_folder.write_result(result.summary())
        return result


def selection_signal(setup: RunSetup) -> tuple[Optional[int], Optional[float], bool]:
    """The checkpoint-selection signal of a run: its sample count, its chance level (the largest
    class share of its labels: what a constant prediction scores) and whether its labels are the
    given ones (a noisy held-out split, or a split of the user's file without clean labels), or
    (None, None, False) when the run has none."""
    dataset = setup.dataset
    if len(setup.holdout):
        labels, noisy = setup.labels.labels[torch.from_numpy(setup.holdout)], True
    elif dataset.val_selects:
        labels = dataset.val_labels.cpu()
        noisy = dataset.val_given_labels is not None and torch.equal(dataset.val_given_labels.cpu(), labels)
    else:
        return None, None, False
    return int(labels.numel()), chance_level(labels), noisy


def chance_level(labels: torch.Tensor) -> float:
    """What the best constant prediction scores against `labels`: the largest class share."""
    counts = torch.bincount(labels.long().cpu())
    return float(counts.max()) / max(int(labels.numel()), 1)


def run_record(setup: RunSetup) -> dict:
    """What a run folder records of the run in config.json (`RunFolder.accept` compares it on a
    resume): the settings, the method, schedule and mixing as resolved, the model's mix points,
    where and how it ran, and the fingerprints of the data and the labels."""
    config, placed = setup.config, setup.placed
    return {
        "config": config.to_dict(), "method": method_record(setup.method), "protocol": asdict(setup.protocol),
        "alpha": setup.alpha, "warmup_epochs": setup.warmup, "mix_points": [list(p) for p in placed.mixer.mix_points],
        "layers": placed.mixer.describe_layers(), "dataset_info": _jsonable(setup.dataset.info),
        **({"optimizer": describe_optimizer(placed.optimizer, placed.scheduler)} if placed.own_schedule else {}),
        "device": str(placed.device), "amp": placed.amp, "channels_last": placed.channels_last,
        "world_size": placed.dist.world_size, **run_fingerprints(setup.dataset, setup.labels.labels.to(placed.device)),
    }


def _restore_checkpoint(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, streams: RunStreams,
                        run_folder: RunFolder) -> None:
    """Model, optimizer and random streams from a verified checkpoint; a checkpoint that does not
    fit this model (another architecture or width) is a clear error, not a traceback."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{run_folder.file(CHECKPOINT_NAME)} does not fit this model ({first_line}); resume with "
                          "the run's model, or pass --overwrite") from None
    streams.load_state_dict(state["streams"])


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)
