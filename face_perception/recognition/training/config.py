"""Training parameters (``TrainConfig``, the seed learner's names and defaults) and their YAML
form: load with overrides, validate, write the resolved config beside the checkpoints."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

MODES = ("full", "head_only", "finetune")
OPTIMIZERS = ("sgd",)
COLOR_ORDERS = ("rgb", "bgr")
PRECISIONS = ("float32", "float64")
# Keys of the toolkit seed's YAML configs that mean one of ours.
ALIASES = {"train_batch_size": "batch_size", "embed_size": "embedding_size",
           "train_data_root": "dataset", "s": "head_s", "m": "head_m", "model": "backbone",
           "snap_folder": "temp_path", "val_step": "val_after"}


@dataclass
class TrainConfig:
    """Every training parameter. The first block is the seed learner's constructor (same
    names, defaults and meaning); the rest are this package's additions (docs/training.md)."""

    lr: float = 0.1
    iters: int = 120
    batch_size: int = 128          # per process; the global batch is batch_size x processes
    optimizer: str = "sgd"
    device: str = "cuda"
    backbone: str = "ir_50"
    network_head: str = "arcface"
    loss: str = "focal"
    temp_path: str = "./temp"      # checkpoints, resolved config, model folders
    mode: str = "full"
    checkpoint_after_iter: int = 0
    checkpoint_load_iter: int = 0
    val_after: int = 0
    input_size: list = field(default_factory=lambda: [112, 112])   # [width, height]
    rgb_mean: list = field(default_factory=lambda: [0.5, 0.5, 0.5])  # R, G, B in 0..1
    rgb_std: list = field(default_factory=lambda: [0.5, 0.5, 0.5])
    embedding_size: int = 512
    weight_decay: float = 5e-4
    momentum: float = 0.9
    drop_last: bool = True
    stages: list = field(default_factory=lambda: [35, 65, 95])
    pin_memory: bool = True
    num_workers: int = 4
    seed: int = 123
    # -- additions
    dataset: str = ""              # ImageFolder tree, aligned ImageFolder, or RecordIO folder
    val_dataset: str = ""          # verification .bin, ImageFolder of chips, or pairs list
    val_pairs: int = 1000          # random pairs drawn from an ImageFolder val_dataset
    init_model: str = ""           # model folder to start from (head_only / finetune)
    color_order: str = "rgb"       # channel order the network sees (AdaFace models: bgr)
    flip: bool = True              # random horizontal flips
    head_s: Optional[float] = None  # head scale / margin; None = the head's own default
    head_m: Optional[float] = None
    head_h: Optional[float] = None  # AdaFace only
    head_t_alpha: Optional[float] = None  # AdaFace only
    partial_fc: bool = False       # shard the head's classes across processes
    sync_bn: bool = True           # several processes: batch norm over the global batch
    decay_bn_and_bias: bool = False  # weight decay also on batch-norm, bias (1-D) parameters
    amp: bool = False              # CUDA only: mixed precision
    precision: str = "float32"     # float64: slow, for numerical checks (tests DDP equivalence)
    channels_last: bool = False    # CUDA only: NHWC memory format
    logging_path: str = ""         # TensorBoard event files; '' = off
    silent: bool = False
    verbose: bool = True

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        from face_perception.recognition.backbones import BACKBONE_NAMES
        from face_perception.recognition.heads import HEAD_NAMES
        from face_perception.recognition.losses import LOSS_NAMES

        _number(self, "lr", low=0.0, strict=True)
        for name, low in (("iters", 1), ("batch_size", 1), ("checkpoint_after_iter", 0),
                          ("checkpoint_load_iter", 0), ("val_after", 0), ("embedding_size", 1),
                          ("num_workers", 0), ("seed", 0), ("val_pairs", 2)):
            _integer(self, name, low)
        _number(self, "weight_decay", low=0.0)
        _number(self, "momentum", low=0.0, high=1.0)
        for name, valid in (("optimizer", OPTIMIZERS), ("backbone", BACKBONE_NAMES),
                            ("network_head", HEAD_NAMES), ("loss", LOSS_NAMES),
                            ("mode", MODES), ("color_order", COLOR_ORDERS),
                            ("precision", PRECISIONS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, "
                                 f"got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not (self.device == "cpu"
                                                    or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got "
                             f"{self.device!r}")
        for name in ("drop_last", "pin_memory", "flip", "partial_fc", "sync_bn",
                     "decay_bn_and_bias", "amp", "channels_last", "silent", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        size = self.input_size
        if not isinstance(size, (list, tuple)) or len(size) != 2 or \
                not all(_is_int(v) and v > 0 for v in size):
            raise ValueError(f"input_size must be [width, height] (two positive integers), "
                             f"got {size!r}")
        self.input_size = [int(v) for v in size]
        for name, low in (("rgb_mean", 0.0), ("rgb_std", 1e-6)):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != 3 or \
                    not all(_is_num(x) and low <= float(x) <= (1.0 if name == "rgb_mean"
                                                                else math.inf) for x in v):
                raise ValueError(f"{name} must be 3 numbers (R, G, B) in 0..1 pixel units, "
                                 f"got {v!r}")
            setattr(self, name, [float(x) for x in v])
        st = self.stages
        if not isinstance(st, (list, tuple)) or not all(_is_int(v) and v >= 0 for v in st) \
                or list(st) != sorted(st):
            raise ValueError(f"stages must be increasing non-negative iteration numbers, "
                             f"got {st!r}")
        self.stages = [int(v) for v in st]
        for name in ("head_s", "head_m", "head_h", "head_t_alpha"):
            v = getattr(self, name)
            if v is not None and not _is_num(v):
                raise ValueError(f"{name} must be a number or null, got {v!r}")
        for name in ("dataset", "val_dataset", "init_model", "temp_path", "logging_path"):
            v = getattr(self, name)
            if v is None:
                setattr(self, name, "")
            elif not isinstance(v, (str, os.PathLike)):
                raise ValueError(f"{name} must be a path string, got {v!r}")
            else:
                setattr(self, name, str(v))
        if not self.temp_path:
            raise ValueError("temp_path must be a non-empty folder path")
        if self.mode in ("head_only", "finetune") and not self.init_model:
            raise ValueError(f"mode {self.mode!r} starts from a trained backbone: set "
                             "init_model to its model folder")
        if self.checkpoint_load_iter and self.checkpoint_load_iter >= self.iters:
            raise ValueError(f"checkpoint_load_iter ({self.checkpoint_load_iter}) must be "
                             f"below iters ({self.iters})")

    def head_kwargs(self) -> dict:
        names = {"head_s": "s", "head_m": "m", "head_h": "h", "head_t_alpha": "t_alpha"}
        return {names[k]: float(getattr(self, k)) for k in names
                if getattr(self, k) is not None}

    # -- dict / YAML --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        head = ("# face-perception train configuration (docs/training.md).\n"
                "# Every key is a TrainConfig field; `face-perception train --print-config` "
                "shows the defaults.\n")
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        from face_perception.files import atomic_write_text

        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping of parameter: value, got "
                             f"{type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        out = {}
        for key, value in data.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise ValueError(f"{where}: unknown parameter {key!r} (valid: "
                                 f"{', '.join(sorted(known))})")
            out[name] = value
        try:
            return cls(**out)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` (value in YAML syntax: 0.01, [1, 2], true, null, a path) -> (key, value)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    return key.strip(), value


def load_config(path: Optional[Union[str, os.PathLike]] = None,
                overrides: Optional[dict] = None) -> TrainConfig:
    """Defaults <- the YAML file at ``path`` <- ``overrides``; errors name the file and key.
    Strings may use ``$VAR`` / ``${VAR}`` environment variables (as the toolkit seed's
    ``$VGGFace2_ROOT``)."""
    import yaml

    data: dict = {}
    where = "overrides"
    if path is not None:
        where = str(path)
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{p}: not a readable YAML file ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{p}: expected a mapping of parameter: value, got "
                             f"{type(loaded).__name__}")
        data.update(loaded)
    for key, value in (overrides or {}).items():
        data[key] = value
    data = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in data.items()}
    return TrainConfig.from_dict(data, where=where)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(cfg, name: str, low: int) -> None:
    v = getattr(cfg, name)
    if not _is_int(v) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def _number(cfg, name: str, low: float, high: Optional[float] = None,
            strict: bool = False) -> None:
    v = getattr(cfg, name)
    if not _is_num(v) or (v <= low if strict else v < low) or (high is not None and v >= high):
        bound = f"> {low}" if strict else (f"in [{low}, {high})" if high is not None
                                           else f">= {low}")
        raise ValueError(f"{name} must be a number {bound}, got {v!r}")
    setattr(cfg, name, float(v))
