"""Training parameters (``TrainConfig``, the seed learner's names and defaults) and their YAML
form: load with overrides, validate, write the resolved config beside the checkpoints."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from face_perception.recognition.model_import.published import LAYOUT_OF_FORMAT
from face_perception.training.config import MODES, OPTIMIZERS, SCHEDULES, check_device

BEST_METRICS = ("auc", "accuracy_at_threshold", "accuracy_mean")
COLOR_ORDERS = ("rgb", "bgr")
PRECISIONS = ("float32", "float64", "bfloat16")
INIT_FORMATS = tuple(LAYOUT_OF_FORMAT)  # the published formats init_from reads
# Keys of the toolkit seed's YAML configs that mean one of ours.
ALIASES = {"train_batch_size": "batch_size", "embed_size": "embedding_size",
           "train_data_root": "dataset", "s": "head_s", "m": "head_m", "model": "backbone",
           "snap_folder": "temp_path", "val_step": "val_after",
           # arcface_torch's config names that mean the same here
           "gradient_acc": "accumulate", "num_epoch": "epochs", "rec": "dataset",
           "output": "temp_path", "fp16": "amp"}


@dataclass
class TrainConfig:
    """Every training parameter. The first block is the seed learner's constructor (same
    names, defaults and meaning); the rest are this package's additions (docs/training.md)."""

    lr: float = 0.1
    iters: int = 120
    batch_size: int = 128          # per process; the global batch is batch_size x processes
    optimizer: str = "sgd"
    device: str = "auto"           # 'auto': cuda when available, else cpu (seed: 'cuda')
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
    num_workers: Optional[int] = None  # loader processes; null = min(2, cores - 1) (seed: 4)
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
    sample_rate: float = 1.0       # partial FC: share of class centres per step (positives +
                                   # random others; arcface_torch's name); 1.0 = all
    sync_bn: bool = True           # several processes: batch norm over the global batch
    decay_bn_and_bias: bool = False  # weight decay also on batch-norm, bias (1-D) parameters
    amp: bool = False              # CUDA only: mixed precision
    precision: str = "float32"     # float64: slow, for numerical checks (tests DDP equivalence)
    channels_last: bool = False    # CUDA only: NHWC memory format
    logging_path: str = ""         # TensorBoard event files; '' = off
    silent: bool = False
    verbose: bool = True           # false: no per-run messages (skipped files, warnings, ...)
    threads: int = 0               # torch threads per process; 0 = usable cores / local processes
    best_metric: str = "auc"       # what picks best/: auc, accuracy_at_threshold, accuracy_mean
    resume: bool = False           # continue from the latest checkpoint under temp_path
    keep_checkpoints: int = 0      # keep the newest N checkpoint files; 0 = all
    lr_schedule: str = "step"      # step (lr / 10 at stages), cosine, poly (power 2)
    warmup_iters: int = 0          # linear warm-up from 0 to lr over these iterations
    epochs: int = 0                # > 0: iters = epochs x iterations per epoch
    clip_grad_norm: float = 0.0    # > 0: clip the global gradient norm to this
    accumulate: int = 1            # gradient accumulation: optimizer step every N batches
    margin_list: Optional[list] = None  # combined head: [m1, m2, m3] (arcface_torch)
    val_flip: bool = False         # validation embeds image + mirror image (summed)
    aug_crop: float = 0.0          # AdaFace augmentations: probability of a random crop,
    aug_photometric: float = 0.0   # of brightness/contrast/saturation jitter,
    aug_low_res: float = 0.0       # of a down- then up-scaled (low-resolution) copy
    init_from: Optional[dict] = None  # {format: arcface-torch | adaface, path: FILE}

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check and clean every value (``recognition.params``: the one set of validators the
        learner's arguments pass through too, as the learner builds a TrainConfig)."""
        from face_perception.recognition import params
        from face_perception.recognition.backbones import BACKBONE_NAMES
        from face_perception.recognition.heads import HEAD_NAMES
        from face_perception.recognition.losses import LOSS_NAMES

        self.lr = params.positive_float("lr", self.lr)
        for name, low in (("iters", 1), ("batch_size", 1), ("checkpoint_after_iter", 0),
                          ("checkpoint_load_iter", 0), ("val_after", 0), ("embedding_size", 1),
                          ("seed", 0), ("val_pairs", 2), ("threads", 0), ("keep_checkpoints", 0),
                          ("warmup_iters", 0), ("epochs", 0), ("accumulate", 1)):
            setattr(self, name, params.int_at_least(name, getattr(self, name), low))
        if self.num_workers is not None:
            self.num_workers = params.int_at_least("num_workers", self.num_workers, 0)
        self.clip_grad_norm = params.float_range("clip_grad_norm", self.clip_grad_norm, 0.0,
                                                 None)
        self.sample_rate = params.positive_float("sample_rate", self.sample_rate)
        if self.sample_rate > 1.0:
            raise ValueError(f"sample_rate must be in (0, 1] (the share of class centres used "
                             f"per step), got {self.sample_rate!r}")
        for name in ("aug_crop", "aug_photometric", "aug_low_res"):
            v = getattr(self, name)
            if not params.is_number(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
            setattr(self, name, float(v))
        self.weight_decay = params.float_range("weight_decay", self.weight_decay, 0.0, None)
        self.momentum = params.float_range("momentum", self.momentum, 0.0, 1.0)
        for name, valid in (("optimizer", OPTIMIZERS), ("backbone", BACKBONE_NAMES),
                            ("network_head", HEAD_NAMES), ("loss", LOSS_NAMES),
                            ("mode", MODES), ("color_order", COLOR_ORDERS),
                            ("precision", PRECISIONS), ("lr_schedule", SCHEDULES),
                            ("best_metric", BEST_METRICS)):
            params.choice(name, getattr(self, name), valid)
        check_device(self.device)
        for name in ("drop_last", "pin_memory", "flip", "partial_fc", "sync_bn",
                     "decay_bn_and_bias", "amp", "channels_last", "silent", "verbose",
                     "resume", "val_flip"):
            setattr(self, name, params.boolean(name, getattr(self, name)))
        self.input_size = params.size_pair("input_size", self.input_size)
        self.rgb_mean = params.rgb_triple("rgb_mean", self.rgb_mean, low=0.0, high=1.0)
        self.rgb_std = params.rgb_triple("rgb_std", self.rgb_std, low=1e-6, high=None)
        self.stages = params.lr_stages(self.stages)
        for name in ("head_s", "head_m", "head_h", "head_t_alpha"):
            v = getattr(self, name)
            if v is not None and not params.is_number(v):
                raise ValueError(f"{name} must be a number or null, got {v!r}")
        ml = self.margin_list
        if ml is not None:
            if not isinstance(ml, (list, tuple)) or len(ml) != 3 or \
                    not all(map(params.is_number, ml)):
                raise ValueError(f"margin_list must be [m1, m2, m3] (three numbers), got {ml!r}")
            self.margin_list = [float(v) for v in ml]
        from face_perception.recognition.heads import check_head_settings

        check_head_settings(self.network_head, self.head_kwargs(),
                            where="head_* / margin_list settings")
        self._check_init_from()
        vd = self.val_dataset
        if isinstance(vd, (list, tuple)):
            if not vd or not all(isinstance(v, (str, os.PathLike)) and str(v) for v in vd):
                raise ValueError(f"val_dataset must be a path or a list of paths, got {vd!r}")
            self.val_dataset = [str(v) for v in vd]
        for name in ("dataset", "init_model", "temp_path", "logging_path") + \
                (() if isinstance(self.val_dataset, list) else ("val_dataset",)):
            v = getattr(self, name)
            if v is None:
                setattr(self, name, "")
            elif not isinstance(v, (str, os.PathLike)):
                raise ValueError(f"{name} must be a path string, got {v!r}")
            else:
                setattr(self, name, str(v))
        if not self.temp_path:
            raise ValueError(f"temp_path must be a non-empty path (a folder), got "
                             f"{self.temp_path!r}")
        if self.mode in ("head_only", "finetune") and not self.init_model:
            raise ValueError(f"mode {self.mode!r} starts from a trained backbone: set "
                             "init_model to its model folder")
        if self.checkpoint_load_iter and self.checkpoint_load_iter >= self.iters:
            raise ValueError(f"checkpoint_load_iter ({self.checkpoint_load_iter}) must be "
                             f"below iters ({self.iters})")

    def learning_rate(self, iteration: int, total: int) -> float:
        """The learning rate of ``iteration`` (0-based) of ``total`` (the core's schedule:
        warm-up, then step, cosine or poly)."""
        from face_perception.training.schedule import learning_rate

        return learning_rate(self.lr, iteration, total, self.lr_schedule, self.stages,
                             self.warmup_iters)

    def head_kwargs(self) -> dict:
        """The head's settings given in this config (the rest keep the head's defaults)."""
        names = {"head_s": "s", "head_m": "m", "head_h": "h", "head_t_alpha": "t_alpha"}
        out = {names[k]: float(getattr(self, k)) for k in names if getattr(self, k) is not None}
        if self.margin_list is not None:
            out.update(zip(("m1", "m2", "m3"), self.margin_list))
        return out

    def val_datasets(self) -> list:
        """The validation sets as a list (``val_dataset`` is one path or several)."""
        v = self.val_dataset
        return list(v) if isinstance(v, list) else ([v] if v else [])

    def _check_init_from(self) -> None:
        v = self.init_from
        if v is None:
            return
        if not isinstance(v, dict) or set(v) != {"format", "path"} or \
                v["format"] not in INIT_FORMATS or not isinstance(v["path"], (str, os.PathLike)):
            raise ValueError(f"init_from must be {{format: {' | '.join(INIT_FORMATS)}, path: "
                             f"FILE}}, got {v!r}")
        if self.mode != "full" or self.init_model:
            raise ValueError("init_from starts mode 'full' from published weights; it does not "
                             "combine with init_model or modes head_only/finetune")

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
    def from_dict(cls, data: dict, where: str = "config",
                  check_names_only: bool = False) -> Optional[TrainConfig]:
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
            if name in out:
                raise ValueError(f"{where}: parameter {name!r} is given twice (as {key!r} too)")
            out[name] = value
        if check_names_only:
            return None
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
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - safe
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{p}: not a readable YAML file ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{p}: expected a mapping of parameter: value, got "
                             f"{type(loaded).__name__}")
        data.update(_canonical(_expand(loaded), str(p)))
    overrides = _canonical(_expand(overrides or {}), "--set")
    try:
        return TrainConfig.from_dict({**data, **overrides}, where=str(path or "--set"))
    except ValueError:
        if path is None or not overrides:
            raise
        TrainConfig.from_dict(data, where=str(path))  # the file alone fails: name the file
        TrainConfig.from_dict({**data, **overrides}, where="--set")  # else an override fails
        raise


def _canonical(data: dict, where: str) -> dict:
    """Keys as TrainConfig names (toolkit aliases resolved); unknown or doubled keys refused."""
    TrainConfig.from_dict({k: None for k in data}, where=where, check_names_only=True)
    return {ALIASES.get(k, k): v for k, v in data.items()}


def _expand(data: dict) -> dict:
    return {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in data.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"parameter {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)
