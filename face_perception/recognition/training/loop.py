"""The training loop: backbone + margin head + focal/softmax loss, SGD with the learning rate
divided by 10 at each stage, checkpoints, validation and the final model folder."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from face_perception.recognition.training import checkpoint as ckpt
from face_perception.recognition.training import distributed
from face_perception.recognition.training.batchnorm import synchronise_batchnorm
from face_perception.recognition.training.config import TrainConfig
from face_perception.recognition.training.data import (
    BatchOrder,
    BatchSampler,
    ChipTransform,
    TorchSet,
    network_normalisation,
    open_training_set,
)
from face_perception.recognition.training.model_folder import trained_meta, write_model_folder
from face_perception.recognition.training.progress import Progress

FOCAL_GAMMA = 2.0


def lr_at(base: float, stages, iteration: int) -> float:
    """The seed's schedule: ``base`` divided by 10 at each stage iteration passed."""
    return base * 0.1 ** sum(1 for s in stages if iteration >= s)


def reduce_loss(ce: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean loss from per-sample cross-entropy: focal ``(1 - p_t)^2 * ce`` (p_t = e^-ce, as
    ``losses.FocalLoss``) or plain softmax cross-entropy."""
    if loss == "focal":
        return ((1.0 - torch.exp(-ce)) ** FOCAL_GAMMA * ce).mean()
    return ce.mean()


class TrainModel(nn.Module):
    """Backbone and (replicated) head in one module, the unit DDP wraps."""

    def __init__(self, backbone: nn.Module, head: Optional[nn.Module],
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.backbone, self.head, self.dtype = backbone, head, dtype

    def forward(self, x, labels=None):
        emb = self.backbone(x)
        if self.head is None:
            return emb, None
        return emb, self.head(emb.to(self.dtype), labels)  # fp16 under AMP


class Trainer:
    """One training run of ``config`` (``dataset``/``val_dataset`` override the config's paths
    and may be dataset objects). ``fit()`` returns the stats dict; afterwards ``backbone``,
    ``head``, ``classes`` and ``model_folder`` hold the result."""

    def __init__(self, config: TrainConfig, dataset=None, val_dataset=None):
        self.cfg = config
        self.dataset = dataset if dataset is not None else config.dataset
        self.val_dataset = val_dataset if val_dataset is not None else config.val_dataset
        self.backbone = self.head = None
        self.classes: list = []
        self.model_folder: Optional[Path] = None
        self.meta = None

    # ------------------------------------------------------------------------------ set-up
    def _device(self) -> str:
        device = self.cfg.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(f"device {device!r} requested but CUDA is not available; using the "
                          "CPU", RuntimeWarning, stacklevel=3)
            device = "cpu"
        return device

    def _build_backbone(self):
        """(backbone, embedding_size, input_size, mean, std, color_order)."""
        from face_perception.recognition.backbones import FIXED_GEOMETRY, get_model
        from face_perception.recognition.params import backbone_geometry

        cfg = self.cfg
        if cfg.mode in ("head_only", "finetune"):
            return _load_backbone(cfg.init_model, cfg.backbone)
        size, emb = backbone_geometry(cfg.backbone, list(cfg.input_size), cfg.embedding_size)
        if cfg.backbone in FIXED_GEOMETRY:
            model = get_model(cfg.backbone)
        else:
            model = get_model(cfg.backbone, embedding_size=emb, input_size=tuple(size))
        mean, std = network_normalisation(cfg.rgb_mean, cfg.rgb_std, cfg.color_order)
        return model, emb, size, mean, std, cfg.color_order

    # ------------------------------------------------------------------------------ run
    def fit(self) -> dict:
        cfg = self.cfg
        device = self._device()
        ctx = distributed.setup(device)
        try:
            return self._fit(cfg, device, ctx)
        finally:
            ctx.close()

    def _fit(self, cfg: TrainConfig, device: str, ctx) -> dict:
        from face_perception.recognition.heads import get_head

        tset = open_training_set(self.dataset)
        self.classes = list(tset.classes)
        num_classes = len(self.classes)
        torch.manual_seed(cfg.seed)  # same initial weights in every process
        backbone, emb_size, size, mean, std, color = self._build_backbone()
        transform = ChipTransform(size, mean, std, color)
        head = get_head(cfg.network_head, emb_size, num_classes, **cfg.head_kwargs())
        self.meta = trained_meta(cfg.backbone, emb_size, size, mean, std, color)
        sharded = cfg.partial_fc and ctx.enabled
        # the head tensors partial FC splits by class; checkpoints hold them whole
        shards = _Shards(distributed.class_keys(head.state_dict(), num_classes), 0,
                         num_classes, sharded, ctx)
        if sharded:
            shards.start, shards.stop = distributed.shard_range(num_classes, ctx.world,
                                                                ctx.rank)
            head = _shard_head(head, cfg, emb_size, shards)
        if ctx.enabled and cfg.sync_bn and cfg.mode != "head_only":
            backbone = synchronise_batchnorm(backbone, device)
        dtype = torch.float64 if cfg.precision == "float64" else torch.float32
        backbone.to(device, dtype)
        head.to(device, dtype)
        if cfg.channels_last and device.startswith("cuda"):
            backbone.to(memory_format=torch.channels_last)
        if cfg.mode == "head_only":
            backbone.requires_grad_(False)
        groups, shards.names = optimizer_groups({"backbone": backbone, "head": head},
                                                cfg.weight_decay, cfg.decay_bn_and_bias)
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        identity = {"backbone": cfg.backbone, "network_head": cfg.network_head,
                    "embedding_size": emb_size, "num_classes": num_classes,
                    "input_size": list(size)}
        out_dir = Path(cfg.temp_path)
        start = 0
        if cfg.checkpoint_load_iter:
            path = ckpt.checkpoint_path(out_dir, cfg.checkpoint_load_iter)
            state = ckpt.load_checkpoint(path, identity)
            shards.restore(path, state, backbone, head, opt)
            ckpt.set_rng_state(state["rng"])
            start = int(state["iteration"])
        if ctx.is_main:
            ckpt.checkpoint_dir(out_dir).mkdir(parents=True, exist_ok=True)
            cfg.save(ckpt.checkpoint_dir(out_dir) / "config.yaml")

        model = TrainModel(backbone, None if sharded else head, dtype)
        runner = model
        if ctx.enabled and any(p.requires_grad for p in model.parameters()):
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.local_rank] if device.startswith("cuda") else None
            runner = DDP(model, device_ids=ids)
        pfc = distributed.PartialFC(head, shards.start, shards.stop, ctx) if sharded else None

        validation = None
        if self.val_dataset and ctx.is_main:
            from face_perception.recognition.training.validation import ValidationSet

            validation = ValidationSet(self.val_dataset, cfg.val_pairs, seed=cfg.seed)

        order = BatchOrder(len(tset), cfg.batch_size, ctx.world, ctx.rank, cfg.seed,
                           cfg.drop_last, cfg.flip, where=str(tset.root))
        loader = torch.utils.data.DataLoader(
            TorchSet(tset, transform), batch_sampler=BatchSampler(order, start, cfg.iters),
            num_workers=cfg.num_workers, pin_memory=cfg.pin_memory and device != "cpu",
            # its own generator: creating the loader must not draw from the global RNG,
            # or a resumed run would diverge from the uninterrupted one
            generator=torch.Generator().manual_seed(cfg.seed))
        amp = cfg.amp and device.startswith("cuda") and dtype == torch.float32
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        progress = Progress(cfg.logging_path, cfg.iters, start, cfg.silent, ctx.is_main)
        stats = {"loss_history": [], "accuracy_history": [], "lr_history": [], "val": {},
                 "val_history": [], "checkpoints": [], "best_val_accuracy": None,
                 "best_iteration": None, "best_model_folder": None, "start_iteration": start}
        rates = []
        embedder = None
        if validation is not None:
            from face_perception.recognition.training.validation import ModelEmbedder

            no_flip = ChipTransform(size, mean, std, color)
            embedder = ModelEmbedder(backbone, self.meta, no_flip, device)
        try:
            for k, (x, y) in zip(range(start, cfg.iters), loader):
                lr = lr_at(cfg.lr, cfg.stages, k)
                for g in opt.param_groups:
                    g["lr"] = lr
                model.train()
                if cfg.mode == "head_only":
                    backbone.eval()  # frozen: batch-norm statistics stay as trained
                x = x.to(device, dtype, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if cfg.channels_last and device.startswith("cuda"):
                    x = x.contiguous(memory_format=torch.channels_last)
                autocast = torch.autocast("cuda") if amp else contextlib.nullcontext()
                with autocast:
                    emb, logits = runner(x, y)
                if sharded:
                    ce, correct, _ = pfc(emb.to(dtype), y)
                    loss = reduce_loss(ce, cfg.loss)
                    loss_value, acc = float(loss.detach()), float(correct.mean())
                else:
                    ce = nn.functional.cross_entropy(logits.to(dtype), y, reduction="none")
                    loss = reduce_loss(ce, cfg.loss)
                    loss_value = distributed.mean_over_processes(float(loss.detach()), ctx)
                    acc = distributed.mean_over_processes(
                        float((logits.argmax(1) == y).float().mean()), ctx)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {float(loss)} at iteration {k}; "
                                             "lower lr")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                done = k + 1
                rate = progress.step(done, loss_value, acc, lr, len(y) * ctx.world)
                rates.append(rate)
                stats["loss_history"].append(loss_value)
                stats["accuracy_history"].append(acc)
                stats["lr_history"].append(lr)
                if cfg.checkpoint_after_iter and done % cfg.checkpoint_after_iter == 0 \
                        and done < cfg.iters + 1:
                    path = ckpt.checkpoint_path(out_dir, done)
                    head_state, opt_state = shards.whole(head, opt)  # collective
                    if ctx.is_main:
                        ckpt.save_checkpoint(path, {
                            **identity, "iteration": done,
                            "backbone_state": backbone.state_dict(),
                            "head_state": head_state, "optimizer": opt_state,
                            "rng": ckpt.rng_state(), "classes": self.classes})
                    stats["checkpoints"].append(str(path))
                if embedder is not None and cfg.val_after and done % cfg.val_after == 0:
                    self._validate(validation, embedder, done, progress, stats, backbone,
                                   head, sharded, out_dir)
        finally:
            progress.close()
        if embedder is not None and (not cfg.val_after or cfg.iters % cfg.val_after):
            self._validate(validation, embedder, cfg.iters, progress, stats, backbone, head,
                           sharded, out_dir)
        full_head = head
        if sharded:
            from face_perception.recognition.heads import get_head

            full_head = get_head(cfg.network_head, emb_size, num_classes, **cfg.head_kwargs())
            full_head.load_state_dict(shards.whole(head, opt)[0])
        self.backbone, self.head = backbone.eval(), (full_head.eval() if full_head is not None
                                                     else None)
        if stats["val"]:
            self.meta.threshold = float(np.clip(stats["val"]["threshold"], -1, 1))
        if ctx.is_main:
            self.model_folder = write_model_folder(out_dir / "model", backbone, self.meta,
                                                   self.head, cfg.network_head, self.classes)
        stats.update({
            "train_loss": stats["loss_history"][-1] if stats["loss_history"] else None,
            "train_accuracy": (stats["accuracy_history"][-1] if stats["accuracy_history"]
                               else None),
            "iterations": cfg.iters, "num_classes": num_classes, "num_images": len(tset),
            "images_per_s": float(np.median(rates)) if rates else None,
            "model_folder": str(out_dir / "model"), "world_size": ctx.world})
        return stats

    def _validate(self, validation, embedder, done, progress, stats, backbone, head, sharded,
                  out_dir) -> None:
        metrics = validation.evaluate(embedder)
        metrics["iteration"] = done
        stats["val"] = metrics
        stats["val_history"].append((done, metrics["accuracy_mean"]))
        progress.validation(done, metrics)
        best = stats["best_val_accuracy"]
        if best is None or metrics["accuracy_mean"] > best:
            stats["best_val_accuracy"], stats["best_iteration"] = metrics["accuracy_mean"], done
            import copy

            meta = copy.deepcopy(self.meta)
            meta.threshold = float(np.clip(metrics["threshold"], -1, 1))
            # The best backbone is what verification measured; the head is kept with it
            # only when it is whole in this process.
            folder = write_model_folder(out_dir / "best", backbone, meta,
                                        None if sharded else head, self.cfg.network_head,
                                        self.classes)
            stats["best_model_folder"] = str(folder)


def train(config: TrainConfig, dataset=None, val_dataset=None) -> dict:
    """Run one training; returns the stats dict (see ``Trainer``)."""
    return Trainer(config, dataset, val_dataset).fit()


def optimizer_groups(modules: dict, weight_decay: float, decay_bn_and_bias: bool):
    """SGD parameter groups of the trainable parameters of ``modules`` ({prefix: module}) and
    their names in optimizer order. Weight decay applies to weights of two or more dimensions
    (convolutions, linear layers, class centres) and, unless ``decay_bn_and_bias``, not to the
    1-D ones: batch-norm scales and shifts, biases, PReLU slopes (the rule of InsightFace's
    arcface_torch and timm: decaying them only pulls normalisation towards zero)."""
    decay, plain = ([], []), ([], [])
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            if p.requires_grad:
                group = decay if decay_bn_and_bias or p.ndim > 1 else plain
                group[0].append(p)
                group[1].append(f"{prefix}.{name}")
    groups, names = [], []
    for (params, group_names), wd in ((decay, weight_decay), (plain, 0.0)):
        if params:
            groups.append({"params": params, "weight_decay": wd})
            names += group_names
    return groups, names


class _Shards:
    """Partial FC's view of the head: this process holds classes [start, stop) of the
    ``keys`` tensors (and their momentum). ``whole`` and ``restore`` convert to and from the
    whole-head form checkpoints hold, so that a run resumes on any number of processes."""

    def __init__(self, keys: set, start: int, stop: int, sharded: bool, ctx):
        self.keys, self.start, self.stop, self.sharded, self.ctx = keys, start, stop, sharded, ctx
        self.names: list = []  # optimizer parameter names, in optimizer order

    def _by_class(self, index: int) -> bool:
        name = self.names[index] if index < len(self.names) else ""
        return name.startswith("head.") and name[len("head."):] in self.keys

    def whole(self, head: nn.Module, opt) -> tuple:
        """(head state, optimizer state) as one process holding every class would have them
        (a collective under partial FC: every process must call it)."""
        head_state, opt_state = head.state_dict(), opt.state_dict()
        if not self.sharded:
            return head_state, opt_state
        head_state = distributed.gather_state(head_state, self.keys, self.ctx)
        moments = {i: s["momentum_buffer"] for i, s in opt_state["state"].items()
                   if s.get("momentum_buffer") is not None}
        moments = distributed.gather_state(
            moments, {i for i in moments if self._by_class(i)}, self.ctx)
        # new dicts: the ones state_dict() returns are the optimizer's own
        opt_state = {**opt_state, "state": {
            i: {**s, "momentum_buffer": moments[i]} if i in moments else s
            for i, s in opt_state["state"].items()}}
        return head_state, opt_state

    def restore(self, path, state: dict, backbone: nn.Module, head: nn.Module, opt) -> None:
        """Load a checkpoint's whole-head state, keeping this process's classes."""
        head_state, opt_state = state["head_state"], state["optimizer"]
        if self.sharded:
            head_state = distributed.shard_state(head_state, self.keys, self.start, self.stop)
            opt_state = {**opt_state, "state": {
                i: {**s, "momentum_buffer": s["momentum_buffer"][self.start:self.stop]}
                if self._by_class(i) and s.get("momentum_buffer") is not None else s
                for i, s in opt_state["state"].items()}}
        try:
            backbone.load_state_dict(state["backbone_state"])
            head.load_state_dict(head_state)
            opt.load_state_dict(opt_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"{path} does not fit this run: {exc}") from None


# ---------------------------------------------------------------------------------- helpers
def _load_backbone(model: str, expected: str):
    """A trained backbone from a model folder (or pretrained name), with its geometry; the
    weights pass the model folder's checksum rule (``model_meta.verified_file``)."""
    from face_perception.recognition.embedder import load_backbone
    from face_perception.recognition.model_meta import ModelMeta
    from face_perception.recognition.pretrained import resolve_model

    folder = resolve_model(model)
    meta = ModelMeta.load(folder)
    if meta.architecture != expected:
        raise ValueError(f"{folder} holds a {meta.architecture!r} backbone but this run "
                         f"trains {expected!r}")
    net = load_backbone(folder, meta)
    return (net, meta.embedding_size, list(meta.input_size), list(meta.mean), list(meta.std),
            meta.color_order)


def _shard_head(head: nn.Module, cfg: TrainConfig, emb_size: int, shards: _Shards):
    """This process's slice of a head built for all classes (so that the shards together
    start from exactly the single-process weights)."""
    from face_perception.recognition.heads import get_head

    part = get_head(cfg.network_head, emb_size, shards.stop - shards.start, **cfg.head_kwargs())
    part.load_state_dict(distributed.shard_state(head.state_dict(), shards.keys, shards.start,
                                                 shards.stop))
    return part
