"""Checks of a loaded data set and of a user's model against it, whatever loaded them.

* `check_dataset(dataset)`: the labels of a loaded data set: at least two training classes, a
  sane class count, validation classes that training has, label ids inside the head.
* `check_model_outputs(model, dataset)`: one forward of a user's model on two training samples
  (`latentmix.fit`): the inputs fit the model and its output width fits the classes.

Every failure is one `ConfigError` line: the field, the value, and the fix.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from latentmix.data.dataset import index_inputs
from latentmix.data.inputs import map_inputs
from latentmix.errors import ConfigError

# A class id this large is a data error (ids must be 0..C-1), not a 100k-way classifier: its output
# layer alone would hold MAX_CLASSES x hidden weights, and a stray 1e9 would ask for a terabyte.
MAX_CLASSES = 100_000


def check_class_count(max_label: int, where: str) -> None:
    """A class id of `max_label` means `max_label` + 1 outputs: refuse absurd ones (a stray 1e9)."""
    if max_label + 1 > MAX_CLASSES:
        raise ConfigError(f"{where}: class id {max_label} would need a {max_label + 1}-way output layer; latentmix "
                          f"takes at most {MAX_CLASSES} classes: number the classes 0..C-1")


def check_dataset(dataset: Any) -> None:
    """The labels of a loaded `Dataset` can be trained on and scored: ids inside the head, at least
    two classes to train on, and no validation class that no training label has (its accuracy
    could only be 0)."""
    def ids(labels: torch.Tensor) -> list[int]:
        return [int(v) for v in torch.unique(labels.detach().cpu())]

    num_classes = int(dataset.num_classes)
    check_class_count(num_classes - 1, f"data set {dataset.name}")
    trained_on = dataset.given_noisy_labels if dataset.given_noisy_labels is not None else dataset.train_labels
    named = {"training labels": dataset.train_labels, "validation labels": dataset.val_labels}
    if dataset.given_noisy_labels is not None:
        named["given noisy labels"] = dataset.given_noisy_labels
    if dataset.test_labels is not None:
        named["test labels"] = dataset.test_labels
    for what, labels in named.items():
        present = ids(labels)
        if present and (present[0] < 0 or present[-1] >= num_classes):
            bad = present[0] if present[0] < 0 else present[-1]
            raise ConfigError(f"{dataset.name}: {what} hold class id {bad}, outside 0..{num_classes - 1} "
                              f"({num_classes} classes); fix the labels")
    classes = ids(trained_on)
    if len(classes) < 2:
        raise ConfigError(f"{dataset.name}: every training label is class {classes[0] if classes else '?'}; a "
                          "classifier needs at least two classes: check the label column/array")
    seen = set(classes) | set(ids(dataset.train_labels))
    unseen = [c for c in ids(dataset.val_labels) if c not in seen]
    if unseen:
        count = int(sum(int((dataset.val_labels == c).sum()) for c in unseen))
        raise ConfigError(f"{dataset.name}: validation labels hold class(es) {unseen[:5]} ({count} sample(s)) that no "
                          "training label has, so the model can never predict them: drop those samples or fix the "
                          "labels")


def check_model_outputs(model: Any, dataset: Any, num_classes_given: Optional[int] = None,
                        what: str = "model", inputs_name: str = "train_inputs") -> int:
    """One forward of `model` on two training samples (eval mode, no gradients, the RNG untouched):
    the inputs must fit it and it must return (2, C) logits with C >= the number of classes.
    Returns C, the number of classes to train with."""
    params = list(model.parameters()) + list(model.buffers())
    device = params[0].device if params else torch.device("cpu")
    sample = index_inputs(dataset.train_inputs, torch.arange(min(2, dataset.num_train)))
    if dataset.eval_transform is not None:
        sample = dataset.eval_transform(sample)
    sample = map_inputs(sample, lambda t: t.to(device))
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            logits = model(sample)
    except Exception as error:  # noqa: BLE001 - any failure here means the inputs do not fit the model
        detail = " ".join(str(error).split())[:300]
        raise ConfigError(f"{what} cannot take {inputs_name} (a forward on 2 samples of shape "
                          f"{_shapes(sample)} failed: {type(error).__name__}: {detail}); give inputs of the shape "
                          "the model expects") from None
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != _first_len(sample):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"{what} must return logits of shape (N, C); on 2 samples it returned {shape}")
    outputs = int(logits.shape[1])
    max_label = int(dataset.num_classes) - 1
    if num_classes_given is not None and int(num_classes_given) != outputs:
        raise ConfigError(f"num_classes={num_classes_given} but {what} returns {outputs} logits per sample; make them "
                          "agree (or leave num_classes out)")
    if outputs <= max_label:
        raise ConfigError(f"{what} returns {outputs} logits per sample, but the labels go up to class {max_label} "
                          f"(train_labels / val_labels / clean_labels need ids 0..{outputs - 1}); widen the model's "
                          "output layer or fix the labels")
    return outputs


def _first_len(inputs: Any) -> int:
    lengths: list[int] = []
    map_inputs(inputs, lambda t: lengths.append(int(t.shape[0])) or t)
    return lengths[0]


def _shapes(inputs: Any) -> str:
    if isinstance(inputs, torch.Tensor):
        return str(tuple(inputs.shape))
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in inputs.items()) + "}"
    return "(" + ", ".join(str(tuple(v.shape)) for v in inputs) + ")"
