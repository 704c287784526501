"""Reading foreign torch checkpoints safely: ``weights_only=True`` always, then the tensors of the
state dict inside whatever container the training code saved."""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from face_perception.files import load_torch_file
from face_perception.recognition.model_import.errors import ModelImportError


def read_checkpoint(path: Union[str, os.PathLike], what: str):
    """The unpickled checkpoint, loaded with ``weights_only=True`` (tensors and plain
    containers only: a pickle that would run code is refused, naming the file).

    PyTorch Lightning checkpoints (AdaFace) keep their hyper-parameters as an
    ``argparse.Namespace``, a plain attribute bag, which is the one class allowed besides."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise ModelImportError(f"{path} is a folder; {what} is one file")
    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_torch_file(path, ModelImportError, what)


def tensor_state(obj, path: Union[str, os.PathLike], what: str,
                 containers: Sequence[str] = ()) -> dict:
    """The state dict in ``obj``: ``obj`` itself, or the first of ``containers`` it holds
    (e.g. 'state_dict'); every value must be a tensor."""
    import torch

    if isinstance(obj, Mapping):
        for key in containers:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelImportError(f"{path} holds no state dict ({what} expected); found "
                               f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ModelImportError(f"{path}: {len(bad)} entries are not named tensors (e.g. "
                               f"{bad[:3]}); not {what}")
    return dict(obj)


def strip_prefix(state: dict, prefix: str, keep_only: bool = False) -> dict:
    """Keys without ``prefix``; ``keep_only`` drops the keys that lack it (e.g. AdaFace's
    'head.' entries beside 'model.'), otherwise they are kept as they are."""
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
        elif not keep_only:
            out[key] = value
    return out
