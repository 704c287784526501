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

    def __init__(self, backbone: nn.Module, head: Optional[nn.Module]):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x, labels=None):
        emb = self.backbone(x)
        if self.head is None:
            return emb, None
        return emb, self.head(emb.float(), labels)


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
        start_cls = 0
        if sharded:
            start_cls, stop_cls = distributed.shard_range(num_classes, ctx.world, ctx.rank)
            head = _shard_head(head, cfg, emb_size, start_cls, stop_cls)
        backbone.to(device)
        head.to(device)
        if cfg.channels_last and device.startswith("cuda"):
            backbone.to(memory_format=torch.channels_last)
        if cfg.mode == "head_only":
            backbone.requires_grad_(False)
        params = [p for p in list(backbone.parameters()) + list(head.parameters())
                  if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        world_tag = ctx.world if sharded else 1
        identity = {"backbone": cfg.backbone, "network_head": cfg.network_head,
                    "embedding_size": emb_size, "num_classes": num_classes,
                    "input_size": list(size), "shards": world_tag}
        out_dir = Path(cfg.temp_path)
        start = 0
        if cfg.checkpoint_load_iter:
            path = _checkpoint_file(out_dir, cfg.checkpoint_load_iter, sharded, ctx.rank)
            state = ckpt.load_checkpoint(path, identity)
            backbone.load_state_dict(state["backbone_state"])
            head.load_state_dict(state["head_state"])
            opt.load_state_dict(state["optimizer"])
            ckpt.set_rng_state(state["rng"])
            start = int(state["iteration"])
        if ctx.is_main:
            ckpt.checkpoint_dir(out_dir).mkdir(parents=True, exist_ok=True)
            cfg.save(ckpt.checkpoint_dir(out_dir) / "config.yaml")

        model = TrainModel(backbone, None if sharded else head)
        runner = model
        if ctx.enabled and any(p.requires_grad for p in model.parameters()):
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.local_rank] if device.startswith("cuda") else None
            runner = DDP(model, device_ids=ids)
        pfc = distributed.PartialFC(head, start_cls, start_cls + head.out_features
                                    if hasattr(head, "out_features") else 0, ctx) \
            if sharded else None

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
        amp = cfg.amp and device.startswith("cuda")
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
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cfg.channels_last and device.startswith("cuda"):
                    x = x.contiguous(memory_format=torch.channels_last)
                autocast = torch.autocast("cuda") if amp else contextlib.nullcontext()
                with autocast:
                    emb, logits = runner(x, y)
                if sharded:
                    ce, correct, _ = pfc(emb.float(), y)
                    loss = reduce_loss(ce, cfg.loss)
                    loss_value, acc = float(loss.detach()), float(correct.mean())
                else:
                    ce = nn.functional.cross_entropy(logits.float(), y, reduction="none")
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
                    path = _checkpoint_file(out_dir, done, sharded, ctx.rank)
                    if ctx.is_main or sharded:
                        ckpt.save_checkpoint(path, {
                            **identity, "iteration": done,
                            "backbone_state": backbone.state_dict(),
                            "head_state": head.state_dict(), "optimizer": opt.state_dict(),
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
        full_head = _gather_head(head, cfg, emb_size, num_classes, ctx) if sharded else head
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


# ---------------------------------------------------------------------------------- helpers
def _checkpoint_file(out_dir: Path, iteration: int, sharded: bool, rank: int) -> Path:
    path = ckpt.checkpoint_path(out_dir, iteration)
    return path.with_name(f"{path.stem}.rank{rank}.pth") if sharded else path


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


def _shard_head(head: nn.Module, cfg: TrainConfig, emb_size: int, start: int, stop: int):
    """This process's slice [start, stop) of a head built for all classes (so that the shards
    together start from exactly the single-process weights)."""
    from face_perception.recognition.heads import get_head

    part = get_head(cfg.network_head, emb_size, stop - start, **cfg.head_kwargs())
    full = head.state_dict()
    n = next(v.shape[0] for k, v in full.items() if k.endswith("weight"))
    part.load_state_dict({k: v[start:stop].clone() if v.ndim and v.shape[0] == n else v
                          for k, v in full.items()})
    return part


def _gather_head(head: nn.Module, cfg: TrainConfig, emb_size: int, num_classes: int, ctx):
    """The whole head from every process's shard (for the model folder)."""
    import torch.distributed as dist

    from face_perception.recognition.heads import get_head

    parts = [None] * ctx.world
    dist.all_gather_object(parts, {k: v.detach().cpu() for k, v in head.state_dict().items()})
    whole = get_head(cfg.network_head, emb_size, num_classes, **cfg.head_kwargs())
    merged = {}
    for k, v in whole.state_dict().items():
        pieces = [p[k] for p in parts]
        merged[k] = torch.cat(pieces) if v.ndim and v.shape[0] == num_classes and \
            pieces[0].shape != v.shape else pieces[0]
    whole.load_state_dict(merged)
    return whole
