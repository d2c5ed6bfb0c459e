"""Vectorized population training: many independent runs of one small MLP as one batched computation.

The spiral grid of the paper's Table 2 is hundreds of runs of a 4-16-24-24-24-16-2 network whose
every step is dominated by per-operation overhead. Here R runs share each operation instead: the
parameters of layer l are stacked into a (R, out, in) tensor and every matrix product is a batched
one (`torch.baddbmm`). Each run keeps everything that makes it a separate run:

* its own initial weights (built exactly as the sequential trainer builds them, from its seed),
* its own noisy labels (noise seed), data order, and mixing draws (layer, lam, permutation per
  step) from the same random streams, drawn by the same functions as `latentmix.training`,
* its own eligible mix layers and alpha, and its own SGD momentum buffers (SGD is elementwise,
  so one optimizer over stacked tensors is R independent optimizers).

The mixed layer is chosen per run without data-dependent branching: at every layer position that
some run mixes at this step, the mixed state is computed for all runs and kept only where the run's
chosen layer is that position (`torch.where`). A run that does not mix (CE) never matches.

Same semantics as `training.train` for methods without loss correction, checked by
tests/test_population.py: same seed, same draws, same metrics to float tolerance. Loss-correcting
methods (a per-run noise model inside the step) go through the sequential trainer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.data import Dataset, load_dataset
from latentmix.errors import ConfigError
from latentmix.mixing import draw_epoch_mixing
from latentmix.noise_model import detection_metrics, fit_noise_model
from latentmix.training import (
    RunConfig, RunStreams, build_run_model, lr_at_epoch, make_labels, protocol_for,
    resolve_device,
)

POPULATION_MODELS = (None, "spiral-mlp", "mlp")


def supports_population(config: RunConfig) -> bool:
    """Whether `config` can be trained in a vectorized population (an MLP, no loss correction)."""
    try:
        method = config.resolved_method()
    except ConfigError:
        return False
    tabular = config.dataset == "spiral" or (config.data is not None and config.model in ("mlp", None))
    return (not method.corrects and config.model in POPULATION_MODELS and tabular
            and config.track_transform == "train" and not config.compile)


@dataclass
class _Layer:
    weight: torch.Tensor  # (R, out, in)
    bias: torch.Tensor  # (R, 1, out)
    activation: Optional[Callable[[torch.Tensor], torch.Tensor]]


def _stack_mlp(models: Sequence[nn.Module], device: torch.device) -> list[_Layer]:
    """Stack the Linear(+activation) blocks of identical MLPs (SpiralMLP or MLP) run by run."""
    layers = []
    first = models[0]
    blocks = [first.get_submodule(name) for name in first.mix_points]
    head_name = "output" if hasattr(first, "output") else "head"
    for position, block in enumerate(blocks + [first.get_submodule(head_name)]):
        if isinstance(block, nn.Sequential):
            if not (len(block) == 2 and isinstance(block[0], nn.Linear)):
                raise ConfigError(f"population training needs Linear+activation blocks; got {block}")
            activation = block[1]
        else:
            activation = None
        name = first.mix_points[position] if position < len(blocks) else head_name

        def linear_of(model: nn.Module) -> nn.Linear:
            module = model.get_submodule(name)
            return module[0] if isinstance(module, nn.Sequential) else module

        weight = torch.stack([linear_of(m).weight.detach() for m in models]).to(device).requires_grad_(True)
        bias = torch.stack([linear_of(m).bias.detach() for m in models])[:, None, :].to(device).requires_grad_(True)
        layers.append(_Layer(weight, bias, activation))
    return layers


def _forward(layers: list[_Layer], x: torch.Tensor, mix: Optional[tuple] = None) -> torch.Tensor:
    """Logits (R, B, C) of all runs; `mix` = (layer per run (R,), lam (R,1,1), 1-lam (R,1,1),
    perm (R, B), positions to check) mixes each run's hidden state at its chosen layer."""
    h = x
    for position in range(len(layers)):
        if mix is not None and position in mix[4]:
            chosen, lam, one_minus_lam, perm, _ = mix
            partner = torch.gather(h, 1, perm[:, :, None].expand(-1, -1, h.shape[2]))
            h = torch.where((chosen == position)[:, None, None], lam * h + one_minus_lam * partner, h)
        layer = layers[position]
        if h.dim() == 2:  # shared inputs (evaluation): broadcast the batch over the runs
            h = torch.matmul(h, layer.weight.transpose(1, 2)) + layer.bias
        else:
            h = torch.baddbmm(layer.bias, h, layer.weight.transpose(1, 2))
        if layer.activation is not None:
            h = layer.activation(h)
    return h


@torch.no_grad()
def _per_sample(layers: list[_Layer], inputs: torch.Tensor, labels: torch.Tensor, chunk: int = 128):
    """Per-run predictions (R, N) and cross-entropy losses against per-run labels (R, N).

    Chunks of `chunk` samples keep every intermediate (R, chunk, width) small enough to stay in
    cache, instead of allocating (and page-faulting) tens of MB per layer."""
    predictions, losses = [], []
    for start in range(0, inputs.shape[0], chunk):
        logits = _forward(layers, inputs[start:start + chunk])
        log_probs = F.log_softmax(logits, dim=2)
        predictions.append(logits.argmax(dim=2))
        losses.append(-log_probs.gather(2, labels[:, start:start + chunk, None]).squeeze(2))
    return torch.cat(predictions, dim=1), torch.cat(losses, dim=1)


def train_population(configs: Sequence[RunConfig], *, dataset: Optional[Dataset] = None, progress: bool = True,
                     on_epoch_end: Optional[Callable[[int, list[dict]], None]] = None) -> list[dict]:
    """Train `configs` together; returns one summary per run (the keys of `RunResult.summary()`,
    plus ``metrics`` (per-epoch rows), ``p_noisy`` and ``predictions``).

    All runs must share the data set, model and optimisation protocol (epochs, batch size, lr,
    weight decay); methods, layers, alpha, noise and seeds may differ.
    """
    if not configs:
        return []
    started = time.perf_counter()
    for config in configs:
        if not supports_population(config):
            raise ConfigError(f"run {config.method} on {config.dataset} cannot be trained in a population "
                              "(loss correction or a non-MLP model): use the sequential trainer")
    first = configs[0]
    if len({config.track_every for config in configs}) > 1:
        raise ConfigError("runs of one population must share track_every")
    device = resolve_device(first.device)
    if dataset is None:
        dataset = load_dataset(first.dataset, data_dir=first.data_dir, data_path=first.data)
    protocol = protocol_for(first, dataset.name)
    for config in configs[1:]:
        other = protocol_for(config, dataset.name)
        if (other.epochs, other.batch_size, other.lr, other.milestones, other.weight_decay) != (
                protocol.epochs, protocol.batch_size, protocol.lr, protocol.milestones, protocol.weight_decay):
            raise ConfigError("runs of one population must share epochs, batch size, lr and weight decay")

    methods = [config.resolved_method() for config in configs]
    alphas = [protocol.alpha if m.alpha is None else m.alpha for m in methods]
    models = [build_run_model(config, dataset) for config in configs]
    eligible = []
    for model, method in zip(models, methods):
        num_layers = len(model.mix_points) + 1
        bad = [layer for layer in method.mix_layers if not 0 <= layer < num_layers]
        if bad:
            raise ConfigError(f"mix layer {bad[0]} is out of range: valid layers are 0..{num_layers - 1}")
        eligible.append(method.mix_layers)
    layers = _stack_mlp(models, device)
    num_runs = len(configs)

    train_x = dataset.train_inputs.to(device).float()
    val_x = dataset.val_inputs.to(device).float()
    val_y = dataset.val_labels.to(device)
    clean_y = dataset.train_labels.to(device)
    labels = [make_labels(config, dataset) for config in configs]
    noisy_y = torch.stack([l.labels for l in labels]).to(device)  # (R, N)
    is_noisy = torch.stack([l.is_noisy for l in labels]).numpy()
    streams = [RunStreams.from_seed(config.seed, torch.device("cpu")) for config in configs]
    num_train = dataset.num_train
    run_index = torch.arange(num_runs, device=device)[:, None]

    parameters = [t for layer in layers for t in (layer.weight, layer.bias)]
    optimizer = torch.optim.SGD(parameters, lr=protocol.lr, momentum=protocol.momentum,
                                weight_decay=protocol.weight_decay)
    metrics: list[list[dict]] = [[] for _ in configs]
    epochs = range(1, protocol.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"population of {num_runs} runs", unit="epoch", dynamic_ncols=True, leave=False)
    batch_size = protocol.batch_size
    for epoch in epochs:
        epoch_started = time.perf_counter()
        lr = lr_at_epoch(protocol, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Each run's draws, from its own streams, by the same functions as the sequential trainer.
        orders = np.stack([s.order.permutation(num_train) for s in streams])
        num_steps = -(-num_train // batch_size)
        draws = [draw_epoch_mixing(eligible[r], alphas[r], num_steps, batch_size, streams[r].mixing)
                 for r in range(num_runs)]
        chosen = np.stack([d.layers for d in draws])  # (R, steps)
        lams = np.stack([d.lams for d in draws])
        keys = np.stack([d.perm_keys if d.perm_keys.shape[1] else np.zeros((num_steps, batch_size)) for d in draws])
        orders_t = torch.from_numpy(orders).to(device)
        chosen_t = torch.from_numpy(chosen).to(device)
        lam_t = torch.from_numpy(lams).to(torch.float32).to(device)
        one_minus_t = torch.from_numpy(1.0 - lams).to(torch.float32).to(device)
        loss_sum = torch.zeros(num_runs, device=device)
        for step in range(num_steps):
            index = orders_t[:, step * batch_size:(step + 1) * batch_size]  # (R, b)
            b = index.shape[1]
            x = train_x[index]  # (R, b, D)
            y = noisy_y.gather(1, index)
            positions = set(np.unique(chosen[:, step]).tolist()) - {-1}
            perm = torch.from_numpy(np.argsort(keys[:, step, :b], axis=1, kind="stable")).to(device)
            mix = (chosen_t[:, step], lam_t[:, step, None, None], one_minus_t[:, step, None, None], perm, positions)
            logits = _forward(layers, x, mix if positions else None)
            log_probs = F.log_softmax(logits, dim=2)
            ce_own = -log_probs.gather(2, y[:, :, None]).squeeze(2).mean(dim=1)
            ce_partner = -log_probs.gather(2, y[run_index, perm][:, :, None]).squeeze(2).mean(dim=1)
            run_loss = torch.where(chosen_t[:, step] >= 0,
                                   lam_t[:, step] * ce_own + one_minus_t[:, step] * ce_partner, ce_own)
            optimizer.zero_grad(set_to_none=True)
            run_loss.sum().backward()
            optimizer.step()
            loss_sum += run_loss.detach() * b

        val_predictions, _ = _per_sample(layers, val_x, val_y.expand(num_runs, -1))
        val_acc = (val_predictions == val_y).float().mean(dim=1).tolist()
        acc_noisy = acc_clean = [None] * num_runs
        if epoch % first.track_every == 0 or epoch == protocol.epochs:  # same rule as training.tracks_at
            predictions, _ = _per_sample(layers, train_x, noisy_y)
            acc_noisy = (predictions == noisy_y).float().mean(dim=1).tolist()
            acc_clean = (predictions == clean_y).float().mean(dim=1).tolist()
        losses = (loss_sum / num_train).tolist()
        elapsed = time.perf_counter() - epoch_started
        for r in range(num_runs):
            metrics[r].append({"epoch": epoch, "lr": lr, "train_loss": losses[r], "val_acc": val_acc[r],
                               "train_acc_noisy": acc_noisy[r], "train_acc_clean": acc_clean[r],
                               "bootstrapping": False, "epoch_time_s": elapsed / num_runs})
        if on_epoch_end is not None:
            on_epoch_end(epoch, [rows[-1] for rows in metrics])
        if progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix(best_val_acc=f"{max(val_acc):.4f}")

    # The end of each run: its noise model on its final losses gives P(noisy) and detection figures.
    predictions, final_losses = _per_sample(layers, train_x, noisy_y)
    wall = time.perf_counter() - started
    summaries = []
    for r, (config, method) in enumerate(zip(configs, methods)):
        rows = metrics[r]
        noise_model = fit_noise_model(final_losses[r].cpu().numpy(), kind=config.noise_model,
                                      **({"lookup": config.posterior_lookup} if config.noise_model == "beta" else {}))
        p_noisy = noise_model.posterior(final_losses[r].cpu().numpy())
        if dataset.train_labels_clean and is_noisy[r].any():
            detection = detection_metrics(p_noisy, is_noisy[r])
            rows[-1].update(detection_auc=detection["auc"], detection_precision=detection["precision"],
                            detection_recall=detection["recall"])
        val_accs = [row["val_acc"] for row in rows]
        best = int(np.argmax(val_accs))
        summaries.append({
            "method": method.name, "mix_layers": _format(method.mix_layers), "correction": method.correction,
            "dataset": config.dataset, "noise": config.noise, "seed": config.seed, "epochs": len(rows),
            "best_val_acc": val_accs[best], "last_val_acc": val_accs[-1], "best_epoch": rows[best]["epoch"],
            "last_train_acc_noisy": rows[-1]["train_acc_noisy"], "last_train_acc_clean": rows[-1]["train_acc_clean"],
            "detection_auc": rows[-1].get("detection_auc"), "detection_precision": rows[-1].get("detection_precision"),
            "detection_recall": rows[-1].get("detection_recall"),
            "actual_noise_rate": float(is_noisy[r].mean()), "wall_time_s": round(wall / num_runs, 4),
            "trained_as": f"population of {num_runs}",
            "metrics": rows, "p_noisy": p_noisy, "predictions": predictions[r].cpu().numpy(),
            "noisy_labels": noisy_y[r].cpu().numpy(), "is_noisy": is_noisy[r],
        })
    return summaries


def _format(layers) -> str:
    from latentmix.mixing import format_layers

    return format_layers(layers)

