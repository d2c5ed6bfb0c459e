"""Use what a run trained: `load_run(RUN_DIR)` and ``latentmix predict RUN_DIR --data FILE``.

A run folder keeps the weights of the checkpoint a user would keep (``selected_model.pt``, the
epoch picked by accuracy on the noisy validation split) and of its last epoch (``checkpoint.pt``),
but the model only means something with the input transform the run applied: a data file's
features and images standardised with the training split's mean and std
(`latentmix.data.arrays`), an image folder's pixels scaled to [-1, 1]
(`latentmix.data.image_folder.scale_images`), the built-in data sets' own normalisation. Rather than
copying those numbers out of config.json by hand, `load_run` sets the run up again as `train` set
it up (`latentmix.training.build_run`: the same loader computes the same transform from the same
data), checks that the data are the ones the run trained on (config.json's ``data_sha256``), and
returns a `TrainedModel`: the model with its transform in front, ready for ``model(x)`` on inputs
as they are stored in the file (raw features, uint8 images, token ids).

A run of `latentmix.fit` trained your own `nn.Module` on inputs you normalised yourself: its
folder cannot rebuild the architecture, so `load_run(RUN_DIR, model=YourModel())` loads the weights
into yours, and `load_run(result)` takes `fit`'s `RunResult` directly; both apply no transform.
"""

from __future__ import annotations

import copy
import csv
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from latentmix.data.array_checks import classify_input, to_tensor
from latentmix.data.array_files import read_csv_table, read_npz
from latentmix.errors import ConfigError
from latentmix.models.paired import PairedNetworks

__all__ = ["TrainedModel", "Predictions", "load_run", "read_prediction_inputs", "write_predictions"]

WEIGHTS = ("selected", "last")
# the sources of fit() runs (latentmix.api.dataset_from_tensors): the user's own model and inputs
FIT_SOURCES = ("tensors", "dataset")
LABEL_COLUMNS = ("labels", "label", "y")


@dataclass(frozen=True)
class Predictions:
    """The model's answer for N samples: `labels` (N,) the predicted class ids, `probabilities`
    (N, C) the softmax of the logits."""

    labels: np.ndarray
    probabilities: np.ndarray


class TrainedModel(nn.Module):
    """A trained model with the input transform its run applied: ``model(x)`` gives logits for
    inputs as stored (the transform first, then the network, in eval mode).

    Attributes: `network` (the trained `nn.Module`), `transform` (inputs -> network inputs),
    `num_classes`, `classes` (class names where the data named them: an image folder's
    sub-folders; else None), `weights` ("selected" or "last": which checkpoint was loaded),
    `epoch` (its epoch, when known), `input_kinds` (a data file's input arrays and their kinds),
    `info` (the data set's record, config.json's ``dataset_info``)."""

    def __init__(self, network: nn.Module, transform: Callable[[Any], Any], *, num_classes: int,
                 classes: Optional[Sequence[str]] = None, weights: str = "last", epoch: Optional[int] = None,
                 info: Optional[dict] = None) -> None:
        super().__init__()
        self.network = network.eval()
        self.transform = transform
        self.num_classes = int(num_classes)
        self.classes = list(classes) if classes is not None else None
        self.weights = weights
        self.epoch = epoch
        self.info = dict(info or {})
        self.eval()

    @property
    def input_kinds(self) -> Optional[dict]:
        kinds = self.info.get("input_kinds")
        return dict(kinds) if isinstance(kinds, dict) else None

    @property
    def device(self) -> torch.device:
        first = next(self.network.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.network(self.transform(inputs))

    def in_training_layout(self, inputs: Any) -> Any:
        """Arrays as a run's data file stores them, in the layout the run trained on, as
        `read_prediction_inputs` reads a file (`latentmix.data.array_checks.classify_input`): an image
        array (N, H, W) gets its channel axis, a channels-last one is transposed, a 1-D feature
        column becomes (N, 1). Inputs of another kind than the run's, and runs of a built-in data
        set, are left as given."""
        kinds = self.input_kinds
        if not kinds:
            return inputs

        def layout(value: Any, kind: str, key: str) -> Any:
            if not isinstance(value, (np.ndarray, torch.Tensor)) or (isinstance(value, torch.Tensor)
                                                                      and value.device.type != "cpu"):
                return value
            try:
                found, array = classify_input(np.asarray(value), key)
            except ConfigError:
                return value  # not a file's array: the network says what it expected
            return to_tensor(array, kind) if found == kind else value

        if isinstance(inputs, dict):
            return {key: layout(value, kinds[key], key) if key in kinds else value for key, value in inputs.items()}
        if len(kinds) == 1:
            key, kind = next(iter(kinds.items()))
            return layout(inputs, kind, key)
        return inputs

    @torch.no_grad()
    def predict(self, inputs: Any, batch_size: int = 1000) -> Predictions:
        """Predicted class and class probabilities of `inputs` (a tensor or array, a tuple or a dict
        of them, as stored), in batches of `batch_size`, in eval mode."""
        from latentmix.api import _as_inputs
        from latentmix.data import index_inputs, map_inputs

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        inputs = _as_inputs(self.in_training_layout(inputs), "inputs")
        lengths = []
        map_inputs(inputs, lambda t: lengths.append(int(t.shape[0])) or t)
        if not lengths or len(set(lengths)) != 1:
            raise ConfigError(f"inputs must hold one sample axis of the same length in every tensor, got lengths {lengths}")
        was_training = self.training
        self.eval()
        device = self.device
        labels, probabilities = [], []
        for batch in torch.arange(lengths[0]).split(batch_size):
            x = map_inputs(index_inputs(inputs, batch), lambda t: t.to(device))
            probs = torch.softmax(self(x).float(), dim=1).cpu()
            labels.append(probs.argmax(dim=1))
            probabilities.append(probs)
        self.train(was_training)
        if not labels:
            return Predictions(np.zeros(0, dtype=np.int64), np.zeros((0, self.num_classes), dtype=np.float32))
        return Predictions(torch.cat(labels).numpy(), torch.cat(probabilities).numpy())

    def class_name(self, class_id: int) -> str:
        """The class's name where the data named it, else its id."""
        return self.classes[class_id] if self.classes is not None and 0 <= class_id < len(self.classes) else str(class_id)


def load_run(source: Union[str, os.PathLike, Any], *, model: Optional[nn.Module] = None, weights: str = "selected",
             device: str = "cpu") -> TrainedModel:
    """The model a run trained, with its input transform, ready for ``model(x)`` (`TrainedModel`).

    `source` is a run folder (of ``latentmix train`` or `latentmix.fit` with `run_dir`) or the
    `RunResult` that `fit` / `latentmix.train` returned. `weights`: ``"selected"`` (default) the
    checkpoint picked by accuracy on the noisy validation split (``selected_model.pt``), falling
    back to the last epoch for a run that selects none (the paper's protocols on a clean test set);
    ``"last"`` the last epoch trained (``checkpoint.pt``). `model`: your own `nn.Module` for a
    `fit` run (its architecture is not in the folder); the weights are loaded into it."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    from latentmix.result import RunResult
    from latentmix.run_setup import resolve_device

    target = resolve_device(device)
    if isinstance(source, RunResult):
        return _from_result(source, model, weights, target)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"load_run takes a run folder or a RunResult, got {type(source).__name__}")
    return _from_folder(Path(source), model, weights, target)


def _from_result(result: Any, model: Optional[nn.Module], weights: str, device: torch.device) -> TrainedModel:
    """A `RunResult`: its model (copied, so that the result keeps its own), with the selected
    weights when asked for and kept."""
    network = copy.deepcopy(model if model is not None else result.model)
    if network is None:
        raise ConfigError("this RunResult holds no model; pass model=YourModel() or load its run folder")
    chosen, epoch = "last", len(result.metrics) or None
    kept = result.kept  # the run's own result, or its plain CE twin's when the run kept that model
    if weights == "selected" and kept.selected_model_state is not None:
        _load_weights(network, kept.selected_model_state, "the RunResult's selected_model_state")
        chosen, epoch = "selected", kept.selected_epoch
    elif model is not None and result.model is not None:
        _load_weights(network, result.model.state_dict(), "the RunResult's model")
    transform, info, classes = _identity, {"source": "tensors"}, None
    config = result.config
    if config.data is not None or config.dataset in _builtin_names():
        dataset = _rebuilt_dataset(config)
        transform, info, classes = _eval_transform(dataset), dict(dataset.info), dataset.info.get("classes")
    return TrainedModel(network.to(device), transform, num_classes=result.num_classes or _output_width(network),
                        classes=classes, weights=chosen, epoch=epoch, info=info)


def _from_folder(path: Path, model: Optional[nn.Module], weights: str, device: torch.device) -> TrainedModel:
    from latentmix.run_folder import CHECKPOINT_NAME, RunFolder, run_fingerprints
    from latentmix.config import RunConfig
    from latentmix.run_setup import build_run

    folder = RunFolder(path)
    folder.require_run()
    record = folder.saved_record()
    info = record.get("dataset_info") or {}
    state, chosen, epoch = _run_weights(folder, weights)
    if info.get("source") in FIT_SOURCES:  # latentmix.fit: the user's model, inputs as given
        if model is None:
            raise ConfigError(f"{path} is a run of latentmix.fit on your own model, whose architecture the folder does "
                              "not hold: load it in Python with latentmix.load_run(RUN_DIR, model=YourModel(...))")
        network = copy.deepcopy(model)
        if (record.get("method") or {}).get("networks") == 2 and not isinstance(network, PairedNetworks):
            network = PairedNetworks.from_model(network, seed=0)  # a two-network run: your model, twice (weights below)
        _load_weights(network, state, str(folder.file(CHECKPOINT_NAME)))
        return TrainedModel(network.to(device), _identity, num_classes=_output_width(network), weights=chosen,
                            epoch=epoch, info=info)
    config = RunConfig.from_dict(record["config"])
    _check_data_reachable(config, path)
    setup = build_run(config, model=copy.deepcopy(model) if model is not None else None)
    saved = record.get("data_sha256")
    if saved is not None and run_fingerprints(setup.dataset, setup.labels.labels)["data_sha256"] != saved:
        raise ConfigError(f"the data that {folder.file('config.json')} names differ from those the run trained on "
                          "(the file changed?): its input transform (standardisation) would differ; restore them")
    _load_weights(setup.model, state, str(folder.file("selected_model.pt" if chosen == "selected" else CHECKPOINT_NAME)))
    dataset = setup.dataset
    return TrainedModel(setup.model.to(device), _eval_transform(dataset), num_classes=dataset.num_classes,
                        classes=dataset.info.get("classes"), weights=chosen, epoch=epoch, info=dict(dataset.info))


def _run_weights(folder: Any, weights: str) -> tuple[dict, str, Optional[int]]:
    """(state dict, "selected" / "last", its epoch) of a run folder."""
    from latentmix.plain_twin import KEPT_TWIN, TWIN_FOLDER
    from latentmix.run_folder import CHECKPOINT_NAME, RunFolder
    from latentmix.selection import selected_epoch

    has_checkpoint = folder.file(CHECKPOINT_NAME).exists()
    if weights == "selected":
        result = folder.read_result() or {}
        if result.get("kept_model") == KEPT_TWIN:  # the run kept its plain CE twin's model (latentmix.plain_twin)
            twin = RunFolder(folder.path / TWIN_FOLDER)
            selected = twin.load_selected("cpu")
            if selected is None:
                raise ConfigError(f"{folder.path} keeps its plain CE twin's model, but {twin.file('selected_model.pt')} "
                                  "is missing: restore the twin's folder, or load weights='last' (this run's own)")
            return selected, "selected", result.get("kept_epoch")
        selected = folder.load_selected("cpu")
        if selected is not None:
            epoch = result.get("selected_epoch")
            if epoch is None and has_checkpoint:
                epoch = selected_epoch(folder.load_checkpoint("cpu")["metrics"])
            return selected, "selected", epoch
    if not has_checkpoint:
        raise ConfigError(f"{folder.path} has neither selected_model.pt nor {CHECKPOINT_NAME}: the run never finished an "
                          "epoch, or ran without checkpoints (checkpoint=False); train it with checkpoints first")
    state = folder.load_checkpoint("cpu")
    return state["model"], "last", int(state["epoch"])


def _check_data_reachable(config: Any, run_dir: Path) -> None:
    """A run's data file (or image folder) is named as it was given to `train`: a relative path
    is read from the current folder, as `train` read it."""
    if config.data and not Path(config.data).exists():
        raise ConfigError(f"the run in {run_dir} trained on --data {config.data}, which is not found from "
                          f"{Path.cwd()}: its input transform is computed from that data, so run from the folder you "
                          "trained in (a relative path) or restore the file")


def _load_weights(network: nn.Module, state: dict, where: str) -> None:
    from latentmix.models.small import match_saved_widths

    match_saved_widths(network, state)  # a token model saved before it had widths 1 and 3
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"the weights of {where} do not fit this model ({first[:200]}); pass the model the run "
                          "trained") from None


def _identity(inputs: Any) -> Any:
    return inputs


def _eval_transform(dataset: Any) -> Callable[[Any], Any]:
    return dataset.eval_transform or _identity


def _builtin_names() -> tuple:
    from latentmix.data import DATASETS

    return tuple(name for name in DATASETS if name != "arrays")


def _rebuilt_dataset(config: Any):
    from latentmix.run_setup import load_run_dataset

    return load_run_dataset(config)


def _output_width(network: nn.Module) -> int:
    """The class count of a user's model: the width of its last linear layer's output."""
    last = [module for module in network.modules() if isinstance(module, nn.Linear)]
    if not last:
        raise ConfigError(f"cannot tell the number of classes of {type(network).__name__} (no nn.Linear head)")
    return int(last[-1].out_features)


# --------------------------------------------------------------------------------------------
# latentmix predict: reading the inputs of a file or folder, writing the predictions
# --------------------------------------------------------------------------------------------


@dataclass
class PredictionInputs:
    """The samples of a file or folder to predict: `inputs` (as stored: the model's transform
    comes after), `names` (a row number or a file path per sample), `given` (the file's labels
    when it has a label column; None otherwise)."""

    inputs: Any
    names: list[str]
    given: Optional[np.ndarray] = None


def read_prediction_inputs(path: Union[str, os.PathLike], trained: TrainedModel) -> PredictionInputs:
    """The samples of `path` in the form `trained` takes: a .npz with the run's input arrays (by
    the names the training file used; one array for a run of a built-in data set), a .csv with the
    run's feature columns, or a folder of images (any depth) of the run's image size and colours.
    A label column / array (labels, label, y) is read too, to compare with."""
    path = Path(path)
    if path.is_dir():
        return _read_image_files(path, trained)
    if not path.is_file():
        raise ConfigError(f"--data {path}: no such file or folder; give a .npz, a .csv or a folder of images")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, trained)
    if suffix == ".csv":
        return _read_csv(path, trained)
    raise ConfigError(f"--data {path}: unknown file type {path.suffix!r}; give a .npz, a .csv or a folder of images")


def _read_npz(path: Path, trained: TrainedModel) -> PredictionInputs:
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path} is not a readable .npz archive (not a zip file); save it with numpy.savez")
    arrays = read_npz(path)
    label_key = next((key for key in LABEL_COLUMNS if key in arrays), None)
    kinds = trained.input_kinds
    if kinds is None:  # a built-in data set: one input array, taken as stored
        candidates = [key for key in arrays if key not in LABEL_COLUMNS and not key.startswith(("val_", "test_", "clean_"))]
        if len(candidates) != 1:
            raise ConfigError(f"{path} holds arrays {sorted(arrays)}; for this run give one input array (and "
                              "optionally labels)")
        inputs: Any = torch.from_numpy(np.ascontiguousarray(arrays[candidates[0]]))
        n = int(inputs.shape[0])
    else:
        missing = [key for key in kinds if key not in arrays]
        if missing:
            raise ConfigError(f"{path} has no input array(s) {missing}: the run trained on arrays named "
                              f"{sorted(kinds)}; present: {sorted(arrays)}")
        tensors = {}
        for key, kind in kinds.items():
            found, array = classify_input(np.asarray(arrays[key]), key)
            if found != kind:
                raise ConfigError(f"{path}: array {key!r} holds {found} (shape {arrays[key].shape}), the run trained "
                                  f"on {kind}; give the same kind of array")
            tensors[key] = to_tensor(array, kind)
        lengths = {int(t.shape[0]) for t in tensors.values()}
        if len(lengths) != 1:
            raise ConfigError(f"{path}: the input arrays have different lengths {sorted(lengths)}")
        n = lengths.pop()
        inputs = tensors[next(iter(kinds))] if len(kinds) == 1 else tensors
    given = _given_labels(arrays[label_key], n, f"{path}: array {label_key!r}") if label_key else None
    return PredictionInputs(inputs, [str(row) for row in range(n)], given)


def _read_csv(path: Path, trained: TrainedModel) -> PredictionInputs:
    header, table = read_csv_table(path)
    columns = trained.info.get("feature_columns")
    label_key = next((key for key in LABEL_COLUMNS if key in header), None)
    if columns is None:
        kinds = trained.input_kinds or {}
        if len(kinds) > 1 or any(kind != "features" for kind in kinds.values()):
            raise ConfigError(f"{path}: this run trained on {kinds or 'a built-in data set'}, which a CSV cannot hold; "
                              "give a .npz with the same arrays")
        columns = [name for name in header if name not in LABEL_COLUMNS and not name.startswith("clean_label")]
    missing = [name for name in columns if name not in header]
    if missing:
        raise ConfigError(f"{path} has no column(s) {missing}: the run trained on columns {columns}")
    position = {name: i for i, name in enumerate(header)}
    features = table[:, [position[name] for name in columns]]
    bad = ~np.isfinite(features)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ConfigError(f"{path}, row {row + 2}, column {columns[column]!r}: NaN/inf; clean or impute it first")
    given = _given_labels(table[:, position[label_key]], len(table), f"{path}: column {label_key!r}") if label_key else None
    inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    return PredictionInputs(inputs, [str(row) for row in range(len(table))], given)


def _read_image_files(root: Path, trained: TrainedModel) -> PredictionInputs:
    from latentmix.data.image_folder import IMAGE_SUFFIXES, read_image

    if trained.info.get("source") != "image-folder":
        raise ConfigError(f"--data {root} is a folder of images, but this run trained on "
                          f"{trained.info.get('source') or 'a built-in data set'}; give a .npz or .csv")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    size, mode = tuple(trained.info["image_size"]), trained.info["mode"]
    images = torch.stack([read_image(path, mode, size) for path in files])
    given = None
    classes = trained.classes or []
    parents = [path.parent.name for path in files]
    if classes and all(parent in classes for parent in parents):  # class sub-folders: their labels
        given = np.asarray([classes.index(parent) for parent in parents], dtype=np.int64)
    return PredictionInputs(images, [str(path.relative_to(root)) for path in files], given)


def _given_labels(values: np.ndarray, n: int, what: str) -> Optional[np.ndarray]:
    values = np.asarray(values)
    if values.shape != (n,) or values.dtype.kind not in "biuf" or not np.all(np.isfinite(values)):
        raise ConfigError(f"{what} must hold one class id per sample ({n})")
    return values.astype(np.int64)


def prediction_rows(samples: PredictionInputs, predictions: Predictions, trained: TrainedModel) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a predictions CSV: the sample (``row`` of a file, ``file`` of a folder),
    the predicted class id (and its name where the classes are named), the given label when the
    file has one, then one probability column per class."""
    key = "file" if trained.info.get("source") == "image-folder" else "row"
    class_columns = [f"p_{trained.class_name(c)}" for c in range(predictions.probabilities.shape[1])]
    columns = [key, "predicted_label"] + (["predicted_class"] if trained.classes else []) \
        + (["given_label"] if samples.given is not None else []) + class_columns
    rows = []
    for i, name in enumerate(samples.names):
        label = int(predictions.labels[i])
        row = {key: name, "predicted_label": label}
        if trained.classes:
            row["predicted_class"] = trained.class_name(label)
        if samples.given is not None:
            row["given_label"] = int(samples.given[i])
        row.update({column: f"{float(p):.6g}" for column, p in zip(class_columns, predictions.probabilities[i])})
        rows.append(row)
    return columns, rows


def write_predictions(out: Optional[Path], columns: list[str], rows: list[dict]) -> None:
    """The predictions CSV to `out` (atomically), or to standard output when `out` is None."""
    if out is None:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        try:
            writer.writeheader()
            writer.writerows(rows)
            sys.stdout.flush()
        except BrokenPipeError:  # a reader that stopped early (| head): the rest goes nowhere, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    from latentmix.io import atomic_write_csv

    atomic_write_csv(out, rows, columns)


def describe(trained: TrainedModel, run_dir: Union[str, os.PathLike]) -> str:
    """Which weights of which run a `TrainedModel` holds, in words."""
    if trained.weights == "selected":
        epoch = f"epoch {trained.epoch}, " if trained.epoch is not None else ""
        return f"the selected checkpoint of {run_dir} ({epoch}picked by validation accuracy)"
    return f"the last epoch of {run_dir}" + (f" (epoch {trained.epoch})" if trained.epoch is not None else "")
