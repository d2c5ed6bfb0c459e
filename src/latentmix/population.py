"""Vectorized population training: many independent runs of one small MLP as one batched computation.

The spiral grid of the paper's Table 2 is hundreds of runs of a 4-16-24-24-24-16-2 network whose
every step, run alone, is dominated by per-operation overhead. Here R runs share each operation:
the parameters of layer l are stacked into a (R, out, in) tensor and every matrix product is a
batched one (`torch.baddbmm`). Each run keeps everything that makes it a separate run:

* its own initial weights (built exactly as the sequential trainer builds them, from its seed),
* its own noisy labels (noise seed), data order, and mixing draws (layer, lam, permutation per
  step) from the same random streams, drawn by the same functions as `latentmix.training`,
* its own eligible mix layers and alpha, and its own SGD momentum (SGD is elementwise, so one
  update over the stacked parameters is R independent optimizers).

Once the runs share every operation the step is bound by arithmetic, not overhead, so the step is
written for it: `latentmix.stacked_mlp.StackedMLP` (forward and backward by hand, each run mixing at
its own layer without branching, SGD folded into the backward; its docstring says how and why).
One shard of runs per thread: runs are independent, so each thread trains its own shard for a
whole epoch without synchronising (`train_population`'s `threads`).

benchmarks/README.md measures it (the 5-seed spiral grid, 425 runs x 300 epochs: ~170 s on 2 CPU
cores, 40-54x the sequential trainer) against the arithmetic floor of its matrix products.

Same semantics as `training.train` for methods without loss correction, checked by
tests/test_population.py (same seed, same draws, same metrics to float tolerance) and
tests/test_stacked_mlp.py (the hand-written backward equals autograd's). Loss-correcting methods
(a per-run noise model inside the step) go through the sequential trainer.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from latentmix.data import Dataset
from latentmix.errors import ConfigError
from latentmix.mixing import draw_epoch_mixing
from latentmix.noise_model import detection_metrics
from latentmix.result import RunResult
from latentmix.config import RunConfig
from latentmix.protocols import base_protocol, lr_at_epoch, Protocol
from latentmix.run_setup import build_run, resolve_device, RunStreams
from latentmix.stacked_mlp import StackedMLP, log_softmax_small, plan_steps
from latentmix.tracking import fit_run_noise_model, tracks_at

POPULATION_MODELS = (None, "spiral-mlp", "mlp")


def supports_population(config: RunConfig) -> bool:
    """Whether `config` can be trained in a vectorized population (an MLP; the mixed cross-entropy,
    the population's only step: no loss correction, no robust loss, one network; no noisy-validation split: the population trains every run on every training sample; a fixed lr
    schedule: the population steps every run with one lr, so a protocol whose first decay follows
    each run's own end of early learning, a --data file's, is trained run by run)."""
    try:
        method = config.resolved_method()
    except ConfigError:
        return False
    tabular = config.dataset == "spiral" or (config.data is not None and config.model in ("mlp", None))
    return (not method.corrects and not method.robust_loss and method.networks == 1 and config.model in POPULATION_MODELS and tabular
            and config.track_transform == "train" and not config.compile and not config.val_split
            and not base_protocol(config).decay_at_learning_end)


class _Shard:
    """A slice of the population's runs with everything needed to train them: one thread's work."""

    def __init__(self, network: StackedMLP, noisy_labels: torch.Tensor, streams: list[RunStreams],
                 eligible: list, alphas: list[float], batch_size: int, num_classes: int):
        self.network, self.noisy_labels, self.streams = network, noisy_labels, streams
        self.eligible, self.alphas = eligible, alphas
        self.batch_size, self.num_classes = batch_size, num_classes

    def train_epoch(self, train_x: torch.Tensor, lr: float, protocol: Protocol) -> torch.Tensor:
        """One epoch of every run of the shard; returns each run's mean training loss (R,)."""
        device = train_x.device
        num_train, batch_size = train_x.shape[0], self.batch_size
        num_steps = -(-num_train // batch_size)
        # Each run's draws, from its own streams, by the same functions as the sequential trainer.
        orders = torch.from_numpy(np.stack([s.order.permutation(num_train) for s in self.streams])).to(device)
        draws = [draw_epoch_mixing(eligible, alpha, num_steps, batch_size, stream.mixing)
                 for eligible, alpha, stream in zip(self.eligible, self.alphas, self.streams)]
        chosen = np.stack([d.layers for d in draws])  # (R, steps)
        lams = np.stack([d.lams for d in draws])
        keys = np.stack([d.perm_keys if d.perm_keys.shape[1] else np.zeros((num_steps, batch_size)) for d in draws])
        batches = [slice(start, min(start + batch_size, num_train)) for start in range(0, num_train, batch_size)]
        labels = self.noisy_labels.gather(1, orders)  # (R, N), in the epoch's order
        inputs = train_x.index_select(0, orders.view(-1)).view(*orders.shape, -1)  # (R, N, D)
        plans = []
        full = num_train // batch_size  # full batches, then possibly one smaller last batch
        for first_step, end_step, b in ((0, full, batch_size), (full, num_steps, num_train - full * batch_size)):
            if end_step > first_step:
                steps = slice(first_step, end_step)
                batch_labels = labels[:, first_step * batch_size:first_step * batch_size + (end_step - first_step) * b]
                plans += plan_steps(chosen[:, steps], lams[:, steps], keys[:, steps, :b],
                                    batch_labels.reshape(len(self.streams), end_step - first_step, b),
                                    self.num_classes, device)

        loss_sum = torch.zeros(len(self.streams), device=device)
        for batch, plan in zip(batches, plans):
            b = batch.stop - batch.start
            logits, layer_inputs, layer_outputs = self.network.forward(inputs[:, batch], plan.mixes)
            log_probs = log_softmax_small(logits)
            loss_sum += (plan.targets * log_probs).sum(dim=(1, 2)).neg_()  # b x each run's mean loss
            # d(mean over the batch of CE against soft targets)/dlogits = (softmax - targets) / b
            logits_grad = (log_probs.exp_() - plan.targets).div_(b)
            self.network.backward(logits_grad, layer_inputs, layer_outputs, plan.mixes, momentum=protocol.momentum)
            self.network.sgd_step(lr, protocol.weight_decay)
        return loss_sum / num_train


class _ShardedRuns:
    """The population's runs split into one shard per thread, trained side by side.

    Runs are independent, so each thread trains its own shard for a whole epoch without
    synchronising, which scales better than splitting each small operation across threads; smaller
    shards (more, smaller operations) measured slower. Entered as a context, it sets torch's own
    thread count to 1 (each shard's thread runs its own operations) and starts the pool; on exit
    it shuts the pool down and restores the thread count.
    """

    def __init__(self, setups: Sequence, noisy_y: torch.Tensor, protocol: Protocol, num_classes: int,
                 device: torch.device, threads: int):
        alphas = [setup.alpha for setup in setups]
        models = [setup.model for setup in setups]
        eligible = [setup.placed.mixup.layers for setup in setups]  # checked against the model by `build_run`
        streams: list[RunStreams] = [setup.streams for setup in setups]
        num_runs = len(setups)
        bounds = np.linspace(0, num_runs, min(threads, num_runs) + 1).round().astype(int)
        self.shards = [_Shard(StackedMLP(models[lo:hi], device), noisy_y[lo:hi], streams[lo:hi], eligible[lo:hi],
                              alphas[lo:hi], protocol.batch_size, num_classes)
                       for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.row_slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.workers = min(threads, len(self.shards))

    def __enter__(self) -> "_ShardedRuns":
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # each shard's thread runs its own operations
        # Each worker sets its own OpenMP/MKL thread count to 1: a new thread starts with the default
        # (all cores), and two workers each spreading their products over both cores run no faster than one.
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="latentmix-population",
                                        initializer=torch.set_num_threads, initargs=(1,))
        return self

    def __exit__(self, *exc_info) -> None:
        self._pool.shutdown()
        torch.set_num_threads(self._torch_threads)

    def each(self, work: Callable[[_Shard, slice], object]) -> list:
        """`work(shard, its rows)` for every shard side by side, one thread each."""
        if self.workers == 1:
            return [work(shard, rows) for shard, rows in zip(self.shards, self.row_slices)]
        return list(self._pool.map(work, self.shards, self.row_slices))

    def predictions_on(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every run's predicted class on shared `inputs` (R, N)."""
        return torch.cat(self.each(lambda shard, rows: shard.network.predict(inputs)))


def _check_population_configs(configs: Sequence[RunConfig]) -> None:
    """Refuse, before any set-up, runs that the population cannot train as the sequential trainer
    would (`supports_population`) and runs that track the training set at different epochs."""
    for config in configs:
        if not supports_population(config):
            raise ConfigError(f"run {config.method} on {config.dataset} cannot be trained in a population "
                              "(loss correction, a robust loss, a non-MLP model, a noisy validation split, or a --data file's "
                              "schedule, whose first lr decay follows each run): use the sequential trainer")
    if len({config.track_every for config in configs}) > 1:
        raise ConfigError("runs of one population must share track_every")


def _population_setups(configs: Sequence[RunConfig], dataset: Optional[Dataset]) -> list:
    """Each run set up as the sequential trainer sets it up (one data load for all; its streams on
    the CPU, where the host-side draws are made), checked to share what one batched computation
    shares: the optimisation protocol, and every training sample (no noisy validation split)."""
    first = configs[0]
    setups = [build_run(first, dataset=dataset)]
    setups += [build_run(config, dataset=setups[0].dataset) for config in configs[1:]]
    protocol = setups[0].protocol
    for setup in setups[1:]:
        other = setup.protocol
        if (other.epochs, other.batch_size, other.lr, other.milestones, other.weight_decay) != (
                protocol.epochs, protocol.batch_size, protocol.lr, protocol.milestones, protocol.weight_decay):
            raise ConfigError("runs of one population must share epochs, batch size, lr and weight decay")
    if any(len(setup.holdout) for setup in setups):
        raise ConfigError("a population trains every run on every training sample: runs with a noisy validation "
                          "split (--val-split) go through the sequential trainer")
    return setups


def _run_result(config: RunConfig, method, rows: list[dict], *, losses: torch.Tensor, predictions: torch.Tensor,
                noisy_labels: torch.Tensor, is_noisy: np.ndarray, dataset: Dataset, num_runs: int, wall: float,
                epoch_times: list[float]) -> RunResult:
    """One run's `RunResult`, as the sequential trainer makes it: its noise model on its final
    losses gives P(noisy) and, where the true labels are known, the detection figures of its last
    metrics row; its timings are its share of the population's."""
    noise_model = fit_run_noise_model(config, losses)  # the trainer's fit: a diverged run says so
    p_noisy = noise_model.posterior(losses.cpu().numpy())
    if dataset.train_labels_clean and is_noisy.any():
        detection = detection_metrics(p_noisy, is_noisy)
        rows[-1].update(detection_auc=detection["auc"], detection_precision=detection["precision"],
                        detection_recall=detection["recall"])
    val_accs = [row["val_acc"] for row in rows]
    best = int(np.argmax(val_accs))
    return RunResult(
        config=config, method=method, metrics=rows, best_val_acc=val_accs[best], last_val_acc=val_accs[-1],
        best_epoch=rows[best]["epoch"], p_noisy=p_noisy, predictions=predictions.cpu().numpy(),
        noisy_labels=noisy_labels.cpu().numpy(), is_noisy=is_noisy, losses=losses.cpu().numpy(),
        num_classes=dataset.num_classes, trained_as=f"population of {num_runs}",
        # timings (each run's share of the population's): timing.json, never result.json
        wall_time_s=round(wall / num_runs, 4), epoch_time_s=list(epoch_times),
    )


def train_population(configs: Sequence[RunConfig], *, dataset: Optional[Dataset] = None, progress: bool = True,
                     on_epoch_end: Optional[Callable[[int, list[dict]], None]] = None,
                     threads: Optional[int] = None) -> list[RunResult]:
    """Train `configs` together; returns one `RunResult` per run, as the sequential trainer does
    (its summary, `RunResult.run_summary`, has a population run's keys: ``trained_as`` is set),
    with the timings ``wall_time_s`` and ``epoch_time_s`` each run's share of the population's.

    All runs must share the data set, model and optimisation protocol (epochs, batch size, lr,
    weight decay); methods, layers, alpha, noise and seeds may differ. The runs are split into
    `threads` shards (default: torch's thread count) trained side by side, one thread each:
    runs are independent, so this needs no synchronisation within an epoch, which scales better
    than splitting each small operation across threads.
    """
    if not configs:
        return []
    started = time.perf_counter()
    _check_population_configs(configs)
    first = configs[0]
    device = resolve_device(first.device)
    setups = _population_setups(configs, dataset)
    dataset, protocol = setups[0].dataset, setups[0].protocol
    threads = torch.get_num_threads() if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")

    methods = [setup.method for setup in setups]
    num_runs = len(configs)
    train_x = dataset.train_inputs.to(device).float().flatten(1)
    val_x = dataset.val_inputs.to(device).float().flatten(1)
    val_y = dataset.val_labels.to(device)
    clean_y = dataset.train_labels.to(device)
    noisy_y = torch.stack([setup.labels.labels for setup in setups]).to(device)  # (R, N)
    is_noisy = torch.stack([setup.labels.is_noisy for setup in setups]).numpy()
    sharded = _ShardedRuns(setups, noisy_y, protocol, dataset.num_classes, device, threads)

    metrics: list[list[dict]] = [[] for _ in configs]
    epoch_times: list[float] = []  # seconds per epoch, each run's share
    epochs = range(1, protocol.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"population of {num_runs} runs", unit="epoch", dynamic_ncols=True, leave=False,
                      disable=None)  # None: no bar where stderr is no terminal
    with sharded:
        best_so_far = 0.0  # of any run at any epoch, for the progress bar
        for epoch in epochs:
            epoch_started = time.perf_counter()
            lr = lr_at_epoch(protocol, epoch)
            losses = torch.cat(sharded.each(lambda shard, rows: shard.train_epoch(train_x, lr, protocol))).tolist()
            val_predictions = sharded.predictions_on(val_x)
            val_acc = (val_predictions == val_y).float().mean(dim=1).tolist()
            acc_noisy = acc_clean = [None] * num_runs
            if tracks_at(epoch, first, methods[0], protocol):  # the trainer's rule (no population run corrects)
                predictions = sharded.predictions_on(train_x)
                acc_noisy = (predictions == noisy_y).float().mean(dim=1).tolist()
                acc_clean = (predictions == clean_y).float().mean(dim=1).tolist()
            epoch_times.append((time.perf_counter() - epoch_started) / num_runs)
            for r in range(num_runs):
                metrics[r].append({"epoch": epoch, "lr": lr, "train_loss": losses[r], "val_acc": val_acc[r],
                                   "train_acc_noisy": acc_noisy[r], "train_acc_clean": acc_clean[r],
                                   "bootstrapping": False})
            if on_epoch_end is not None:
                on_epoch_end(epoch, [rows[-1] for rows in metrics])
            if progress and hasattr(epochs, "set_postfix"):
                # the best of any run at any epoch so far (the best of this epoch alone goes down)
                best_so_far = max(best_so_far, max(val_acc))
                epochs.set_postfix(best_val_acc=f"{best_so_far:.4f}")
        # The end of each run: its noise model on its final losses gives P(noisy) and detection figures.
        parts = sharded.each(lambda shard, rows: shard.network.per_sample(train_x, noisy_y[rows]))
        predictions, final_losses = torch.cat([p for p, _ in parts]), torch.cat([l for _, l in parts])

    wall = time.perf_counter() - started
    return [_run_result(config, method, metrics[r], losses=final_losses[r], predictions=predictions[r],
                        noisy_labels=noisy_y[r], is_noisy=is_noisy[r], dataset=dataset, num_runs=num_runs, wall=wall,
                        epoch_times=epoch_times)
            for r, (config, method) in enumerate(zip(configs, methods))]
