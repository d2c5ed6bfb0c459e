"""Model inputs as the library passes them around: a tensor, a tuple of tensors, or a dict of
tensors (one entry per modality), the same shapes `latentmix.mixing` accepts; and their digest
(`tensors_sha256`, the data fingerprint a run folder records)."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Union

import torch

Inputs = Union[torch.Tensor, tuple, dict]


def map_inputs(inputs: Inputs, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
    """Apply `fn` to every tensor of a tensor / tuple / dict input."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {key: map_inputs(value, fn) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_inputs(value, fn) for value in inputs)
    raise TypeError(f"inputs must be a tensor, a tuple or a dict of tensors, got {type(inputs).__name__}")


def tensors_sha256(*parts: Any) -> str:
    """sha256 over tensors (or tuples / dicts of them; None is skipped): dtype, shape and bytes of
    each, so that equal digests mean equal data."""
    digest = hashlib.sha256()

    def add(tensor: torch.Tensor) -> torch.Tensor:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
        return tensor

    for part in parts:
        if hasattr(part, "fingerprint"):  # streamed inputs (latentmix.data.streamed): not read whole
            digest.update(f"streamed:{part.fingerprint()}".encode())
        elif part is not None:
            map_inputs(part, add)
    return digest.hexdigest()
