"""The training loop: backbone + margin head + focal/softmax loss, SGD or AdamW with a step,
cosine or polynomial schedule (with warm-up), gradient accumulation and clipping, checkpoints
(exact resume, best model kept across resumes), validation and the final model folder."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from face_perception.devices import torch_device
from face_perception.recognition.model_folder import trained_meta, write_model_folder
from face_perception.recognition.training import checkpoint as ckpt
from face_perception.recognition.training import distributed
from face_perception.recognition.training.batchnorm import synchronise_batchnorm
from face_perception.recognition.training.class_sampling import ClassSampler, sampled_head
from face_perception.recognition.training.config import TrainConfig
from face_perception.recognition.training.data import (
    Augmentation,
    BatchOrder,
    BatchSampler,
    ChipTransform,
    TorchSet,
    network_normalisation,
    open_training_set,
)
from face_perception.recognition.training.progress import Progress
from face_perception.recognition.training.schedule import learning_rate, lr_at  # noqa: F401

FOCAL_GAMMA = 2.0


def reduce_loss(ce: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean loss from per-sample cross-entropy: focal ``(1 - p_t)^2 * ce`` (p_t = e^-ce, as
    ``losses.FocalLoss``) or plain softmax cross-entropy."""
    if loss == "focal":
        return ((1.0 - torch.exp(-ce)) ** FOCAL_GAMMA * ce).mean()
    return ce.mean()


def process_threads(threads: int) -> int:
    """Torch threads of one training process: ``threads``, or with 0 the usable cores shared
    out among the processes torchrun started on this machine (spinning OpenMP threads that
    outnumber the cores cost 3-7x on a shared machine, docs/training.md)."""
    from face_perception.threads import usable_cores

    if threads:
        return int(threads)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, usable_cores() // local)


def loader_workers(num_workers: Optional[int]) -> int:
    """Data-loader processes: the configured number, or min(2, cores - 1)."""
    from face_perception.threads import usable_cores

    if num_workers is not None:
        return int(num_workers)
    return max(0, min(2, usable_cores() - 1))


class TrainModel(nn.Module):
    """Backbone and (replicated) head in one module, the unit DDP wraps. ``forward`` gives
    (embeddings, logits, labels): with class sampling (``sampler`` enabled, one process) the
    logits cover the sampled classes only and the labels are positions among them."""

    def __init__(self, backbone: nn.Module, head: Optional[nn.Module],
                 dtype: torch.dtype = torch.float32, sampler: Optional[ClassSampler] = None,
                 keys: frozenset = frozenset()):
        super().__init__()
        self.backbone, self.head, self.dtype = backbone, head, dtype
        self.sampler, self.keys = sampler, keys

    def forward(self, x, labels=None):
        emb = self.backbone(x)
        if self.head is None:
            return emb, None, labels
        # the margin (acos, cos of sums) in full precision, also under AMP / bfloat16
        with torch.autocast(x.device.type, enabled=False):
            if labels is not None and self.sampler is not None and self.sampler.enabled:
                index, labels = self.sampler.choose(labels)
                return emb, sampled_head(self.head, self.keys, index, emb.to(self.dtype),
                                         labels), labels
            return emb, self.head(emb.to(self.dtype), labels), labels


class Trainer:
    """One training run of ``config`` (``dataset``/``val_dataset`` override the config's paths
    and may be dataset objects). ``fit()`` returns the stats dict; afterwards ``backbone``,
    ``head``, ``classes`` and ``model_folder`` hold the result."""

    def __init__(self, config: TrainConfig, dataset=None, val_dataset=None):
        self.cfg = config
        self.dataset = dataset if dataset is not None else config.dataset
        if val_dataset is None:
            self.val_sources = config.val_datasets()
        else:
            self.val_sources = list(val_dataset) if isinstance(val_dataset, (list, tuple)) \
                else [val_dataset]
        self.backbone = self.head = None
        self.classes: list = []
        self.model_folder: Optional[Path] = None
        self.meta = None
        self.threads = 0
        self._main = True
        self._layout: dict = {}  # backbone unit options of an init_from network

    # ------------------------------------------------------------------------------ set-up
    def _device(self) -> str:
        device = self.cfg.device
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return torch_device(device, stacklevel=4)

    def _say(self, text: str) -> None:
        """A message for the user (not per step): only the main process, only when verbose."""
        if self._main and self.cfg.verbose and not self.cfg.silent:
            print(text, file=sys.stderr)

    def build_backbone(self):
        """The network this run starts from, before any step: (backbone, embedding_size,
        input_size, mean, std, color_order). A new one (mode full), the backbone of
        ``init_model`` (head_only, finetune) or the published weights of ``init_from``."""
        from face_perception.recognition.backbones import FIXED_GEOMETRY, get_model
        from face_perception.recognition.params import backbone_geometry

        cfg = self.cfg
        if cfg.mode in ("head_only", "finetune"):
            net, meta = _load_backbone(cfg.init_model, cfg.backbone)
            # the layout options of a folder trained from published weights stay with it
            self._layout = {k: v for k, v in meta.architecture_kwargs.items()
                            if k not in ("embedding_size", "input_size")}
            return (net, meta.embedding_size, list(meta.input_size), list(meta.mean),
                    list(meta.std), meta.color_order)
        if cfg.init_from:
            return self._published_backbone()
        size, emb = backbone_geometry(cfg.backbone, list(cfg.input_size), cfg.embedding_size)
        if cfg.backbone in FIXED_GEOMETRY:
            model = get_model(cfg.backbone)
        else:
            model = get_model(cfg.backbone, embedding_size=emb, input_size=tuple(size))
        mean, std = network_normalisation(cfg.rgb_mean, cfg.rgb_std, cfg.color_order)
        return model, emb, size, mean, std, cfg.color_order

    def _published_backbone(self):
        """``init_from``: the published network, built in its own layout (arcface_torch's
        units have a mid BN and projection shortcuts ours lack) with its weights; the run's
        geometry and input normalisation must be the ones those weights were trained with."""
        from face_perception.recognition.model_import import published_backbone

        cfg = self.cfg
        fmt, path = cfg.init_from["format"], cfg.init_from["path"]
        pub = published_backbone(path, fmt, cfg.backbone)
        mean, std = network_normalisation(cfg.rgb_mean, cfg.rgb_std, cfg.color_order)
        wrong = []
        if list(cfg.input_size) != list(pub.input_size):
            wrong.append(f"input_size {cfg.input_size} (the file's: {list(pub.input_size)})")
        if cfg.embedding_size != pub.embedding_size:
            wrong.append(f"embedding_size {cfg.embedding_size} (the file's: "
                         f"{pub.embedding_size})")
        if cfg.color_order != pub.color_order:
            wrong.append(f"color_order {cfg.color_order!r} (the file's: {pub.color_order!r})")
        if not np.allclose(mean, pub.mean) or not np.allclose(std, pub.std):
            wrong.append(f"rgb_mean/rgb_std {cfg.rgb_mean}/{cfg.rgb_std} (the file's: "
                         f"{[v / 255 for v in pub.mean]}/{[v / 255 for v in pub.std]})")
        if wrong:
            raise ValueError(f"init_from {path} ({fmt}) was trained with other settings than "
                             f"this run's: {'; '.join(wrong)}")
        self._layout = {k: v for k, v in pub.architecture_kwargs.items()
                        if k not in ("embedding_size", "input_size")}
        return (pub.model, pub.embedding_size, list(pub.input_size), mean, std,
                pub.color_order)

    # ------------------------------------------------------------------------------ run
    def fit(self) -> dict:
        from face_perception.threads import set_torch_threads

        cfg = self.cfg
        device = self._device()
        self.threads = set_torch_threads(process_threads(cfg.threads))
        ctx = distributed.setup(device)
        self._main = ctx.is_main
        try:
            return self._fit(cfg, device, ctx)
        finally:
            ctx.close()

    def _fit(self, cfg: TrainConfig, device: str, ctx) -> dict:
        from face_perception.recognition.heads import get_head

        # Everything that can be wrong with the input is found before anything is written.
        tset = open_training_set(self.dataset)
        for note in tset.notes():
            self._say(note)
        order = BatchOrder(len(tset), cfg.batch_size, ctx.world, ctx.rank, cfg.seed,
                           cfg.drop_last, cfg.flip, where=str(tset.root))
        total = cfg.iters
        if cfg.epochs:
            total = max(1, cfg.epochs * order.per_epoch // cfg.accumulate)
        validations = []
        if ctx.is_main:
            from face_perception.recognition.training.validation import ValidationSet

            validations = [ValidationSet(v, cfg.val_pairs, seed=cfg.seed)
                           for v in self.val_sources]
            for v in validations:
                problem = v.fold_problem()
                if problem:
                    warnings.warn(f"{problem}; best/ is chosen by {cfg.best_metric}"
                                  + (" (set best_metric: auc)" if cfg.best_metric ==
                                     "accuracy_mean" else ""), RuntimeWarning, stacklevel=3)
        self.classes = list(tset.classes)
        num_classes = len(self.classes)
        torch.manual_seed(cfg.seed)  # same initial weights in every process
        backbone, emb_size, size, mean, std, color = self.build_backbone()
        transform = ChipTransform(size, mean, std, color)
        head = get_head(cfg.network_head, emb_size, num_classes, **cfg.head_kwargs())
        self.meta = trained_meta(cfg.backbone, emb_size, size, mean, std, color,
                                 layout=self._layout)
        sharded = cfg.partial_fc and ctx.enabled
        if cfg.sample_rate < 1.0 and ctx.enabled and not sharded:
            raise ValueError(f"sample_rate {cfg.sample_rate} samples each process's shard of "
                             "the class centres: with several processes set partial_fc: true")
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
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=cfg.lr)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        identity = {"backbone": cfg.backbone, "network_head": cfg.network_head,
                    "embedding_size": emb_size, "num_classes": num_classes,
                    "input_size": list(size), "classes": self.classes,
                    "optimizer_name": cfg.optimizer, "sample_rate": cfg.sample_rate}
        out_dir = Path(cfg.temp_path)
        stats = {"loss_history": [], "accuracy_history": [], "lr_history": [], "val": {},
                 "val_sets": {}, "val_history": [], "val_scores": [], "checkpoints": [],
                 "best_val_accuracy": None, "best_val_score": None,
                 "best_metric": cfg.best_metric, "best_iteration": None,
                 "best_model_folder": None, "start_iteration": 0, "threads": self.threads}
        start = 0
        load = cfg.checkpoint_load_iter
        if cfg.resume and not load:
            load = ckpt.latest_iteration(out_dir, below=total)
            if not load:
                self._say(f"resume: no checkpoint in {ckpt.checkpoint_dir(out_dir)}; "
                          "starting at iteration 0")
        if load:
            if load >= total:
                raise ValueError(f"checkpoint_load_iter ({load}) must be below the run's "
                                 f"{total} iterations")
            path = ckpt.checkpoint_path(out_dir, load)
            state = ckpt.load_checkpoint(path, identity, defaults={"optimizer_name": "sgd",
                                                               "sample_rate": 1.0})
            shards.restore(path, state, backbone, head, opt)
            ckpt.set_rng_state(state["rng"])
            start = int(state["iteration"])
            _restore_validation(stats, state.get("validation"), out_dir)
            self._say(f"resumed from {path} at iteration {start}")
        stats["start_iteration"] = start
        if ctx.is_main:
            ckpt.checkpoint_dir(out_dir).mkdir(parents=True, exist_ok=True)
            cfg.save(ckpt.checkpoint_dir(out_dir) / "config.yaml")

        sampler = ClassSampler(cfg.sample_rate, shards.stop - shards.start, cfg.seed, ctx.rank)
        model = TrainModel(backbone, None if sharded else head, dtype, sampler,
                           frozenset(shards.keys))
        runner = model
        is_ddp = ctx.enabled and any(p.requires_grad for p in model.parameters())
        if is_ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.local_rank] if device.startswith("cuda") else None
            runner = DDP(model, device_ids=ids)
        pfc = distributed.PartialFC(head, shards.start, shards.stop, ctx, sampler,
                                    frozenset(shards.keys)) if sharded else None
        trainable = [p for g in opt.param_groups for p in g["params"]]

        augment = Augmentation(cfg.aug_crop, cfg.aug_photometric, cfg.aug_low_res)
        loader = torch.utils.data.DataLoader(
            TorchSet(tset, transform, augment),
            batch_sampler=BatchSampler(order, start, total, cfg.accumulate),
            num_workers=loader_workers(cfg.num_workers),
            pin_memory=cfg.pin_memory and device != "cpu",
            # its own generator: creating the loader must not draw from the global RNG,
            # or a resumed run would diverge from the uninterrupted one
            generator=torch.Generator().manual_seed(cfg.seed))
        amp = cfg.amp and device.startswith("cuda") and dtype == torch.float32
        bf16 = cfg.precision == "bfloat16"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        progress = Progress(cfg.logging_path, total, start, cfg.silent, ctx.is_main,
                            verbose=cfg.verbose)
        embedder = None
        if validations:
            from face_perception.recognition.training.validation import ModelEmbedder

            no_flip = ChipTransform(size, mean, std, color)
            embedder = ModelEmbedder(backbone, self.meta, no_flip, device,
                                     flip_tta=cfg.val_flip)
        rates = []
        batches = iter(loader)
        try:
            for k in range(start, total):
                lr = learning_rate(cfg, k, total)
                for g in opt.param_groups:
                    g["lr"] = lr
                model.train()
                if cfg.mode == "head_only":
                    backbone.eval()  # frozen: batch-norm statistics stay as trained
                opt.zero_grad(set_to_none=True)
                loss_value = acc = 0.0
                images = 0
                for j in range(cfg.accumulate):
                    x, y = next(batches)
                    sampler.at(k, j)
                    x = x.to(device, dtype, non_blocking=True)
                    y = y.to(device, non_blocking=True)
                    if cfg.channels_last and device.startswith("cuda"):
                        x = x.contiguous(memory_format=torch.channels_last)
                    last = j == cfg.accumulate - 1
                    # DDP all-reduces gradients on the last micro-batch only
                    sync = runner.no_sync() if is_ddp and not last else contextlib.nullcontext()
                    if amp:
                        autocast = torch.autocast("cuda")
                    elif bf16:
                        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16)
                    else:
                        autocast = contextlib.nullcontext()
                    with sync:
                        with autocast:
                            emb, logits, y_logits = runner(x, y)
                        if sharded:
                            ce, correct, _ = pfc(emb.to(dtype), y)
                            loss = reduce_loss(ce, cfg.loss)
                            part_loss, part_acc = float(loss.detach()), float(correct.mean())
                        else:
                            ce = nn.functional.cross_entropy(logits.to(dtype), y_logits,
                                                             reduction="none")
                            loss = reduce_loss(ce, cfg.loss)
                            part_loss = distributed.mean_over_processes(
                                float(loss.detach()), ctx)
                            part_acc = distributed.mean_over_processes(
                                float((logits.argmax(1) == y_logits).float().mean()), ctx)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"loss became {float(loss)} at iteration "
                                                     f"{k}; lower lr")
                        scaler.scale(loss / cfg.accumulate).backward()
                    loss_value += part_loss / cfg.accumulate
                    acc += part_acc / cfg.accumulate
                    images += len(y) * ctx.world
                if cfg.clip_grad_norm:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm)
                scaler.step(opt)
                scaler.update()
                done = k + 1
                rates.append(progress.step(done, loss_value, acc, lr, images))
                stats["loss_history"].append(loss_value)
                stats["accuracy_history"].append(acc)
                stats["lr_history"].append(lr)
                if embedder is not None and cfg.val_after and done % cfg.val_after == 0:
                    self._validate(validations, embedder, done, progress, stats, backbone,
                                   head, sharded, out_dir)
                if cfg.checkpoint_after_iter and done % cfg.checkpoint_after_iter == 0:
                    path = ckpt.checkpoint_path(out_dir, done)
                    head_state, opt_state = shards.whole(head, opt)  # collective
                    if ctx.is_main:
                        ckpt.save_checkpoint(path, {
                            **identity, "iteration": done,
                            "backbone_state": backbone.state_dict(),
                            "head_state": head_state, "optimizer": opt_state,
                            "rng": ckpt.rng_state(), "validation": _validation_state(stats)})
                        ckpt.prune_checkpoints(out_dir, cfg.keep_checkpoints)
                    stats["checkpoints"].append(str(path))
                progress.restart_clock()  # images/s counts training steps only
        finally:
            progress.close()
        if embedder is not None and (not cfg.val_after or total % cfg.val_after):
            self._validate(validations, embedder, total, progress, stats, backbone, head,
                           sharded, out_dir)
        full_head = head
        if sharded:
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
            "iterations": total, "num_classes": num_classes, "num_images": len(tset),
            "images_per_s": float(np.median(rates)) if rates else None,
            "model_folder": str(out_dir / "model"), "world_size": ctx.world})
        return stats

    def _validate(self, validations, embedder, done, progress, stats, backbone, head, sharded,
                  out_dir) -> None:
        """Evaluate every validation set; best/ is the model with the highest mean of
        ``best_metric`` over the sets (AUC by default: it needs no folds)."""
        results = {}
        for v in validations:
            metrics = v.evaluate(embedder)
            metrics["iteration"] = done
            results[v.source] = metrics
            progress.validation(done, metrics, v.name if len(validations) > 1 else "")
        first = results[validations[0].source]
        metric = self.cfg.best_metric
        score = float(np.mean([m[metric] for m in results.values()]))
        stats["val"], stats["val_sets"] = first, results
        stats["val_history"].append((done, first["accuracy_mean"]))
        stats["val_scores"].append((done, score))
        best = stats["best_val_score"]
        if best is None or score > best:
            stats["best_val_score"], stats["best_iteration"] = score, done
            stats["best_val_accuracy"] = first["accuracy_mean"]
            import copy

            meta = copy.deepcopy(self.meta)
            meta.threshold = float(np.clip(first["threshold"], -1, 1))
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
    """Optimizer parameter groups of the trainable parameters of ``modules`` ({prefix:
    module}) and their names in optimizer order. Weight decay applies to weights of two or more
    dimensions (convolutions, linear layers, class centres) and, unless ``decay_bn_and_bias``,
    not to the 1-D ones: batch-norm scales and shifts, biases, PReLU slopes (the rule of
    InsightFace's arcface_torch and timm: decaying them only pulls normalisation towards
    zero)."""
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
    ``keys`` tensors (and of their optimizer state: SGD momentum, AdamW moments). ``whole`` and
    ``restore`` convert to and from the whole-head form checkpoints hold, so that a run
    resumes on any number of processes."""

    def __init__(self, keys: set, start: int, stop: int, sharded: bool, ctx):
        self.keys, self.start, self.stop, self.sharded, self.ctx = keys, start, stop, sharded, ctx
        self.names: list = []  # optimizer parameter names, in optimizer order

    def _by_class(self, index: int) -> bool:
        name = self.names[index] if index < len(self.names) else ""
        return name.startswith("head.") and name[len("head."):] in self.keys

    def _per_class(self, opt_state: dict) -> dict:
        """{"<param index>/<state name>": tensor} of the class-sharded optimizer state."""
        return {f"{i}/{name}": v for i, s in opt_state["state"].items() if self._by_class(i)
                for name, v in s.items() if torch.is_tensor(v) and v.ndim > 0}

    def whole(self, head: nn.Module, opt) -> tuple:
        """(head state, optimizer state) as one process holding every class would have them
        (a collective under partial FC: every process must call it)."""
        head_state, opt_state = head.state_dict(), opt.state_dict()
        if not self.sharded:
            return head_state, opt_state
        head_state = distributed.gather_state(head_state, self.keys, self.ctx)
        part = self._per_class(opt_state)
        gathered = distributed.gather_state(part, set(part), self.ctx)
        # new dicts: the ones state_dict() returns are the optimizer's own
        opt_state = {**opt_state, "state": {
            i: {name: gathered.get(f"{i}/{name}", v) for name, v in s.items()}
            for i, s in opt_state["state"].items()}}
        return head_state, opt_state

    def restore(self, path, state: dict, backbone: nn.Module, head: nn.Module, opt) -> None:
        """Load a checkpoint's whole-head state, keeping this process's classes."""
        head_state, opt_state = state["head_state"], state["optimizer"]
        if self.sharded:
            head_state = distributed.shard_state(head_state, self.keys, self.start, self.stop)
            part = self._per_class(opt_state)
            opt_state = {**opt_state, "state": {
                i: {name: v[self.start:self.stop] if f"{i}/{name}" in part else v
                    for name, v in s.items()}
                for i, s in opt_state["state"].items()}}
        try:
            backbone.load_state_dict(state["backbone_state"])
            head.load_state_dict(head_state)
            opt.load_state_dict(opt_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"{path} does not fit this run: {exc}") from None


# ---------------------------------------------------------------------------------- helpers
def _validation_state(stats: dict) -> dict:
    """What a checkpoint keeps of the validations so far (plain numbers, lists, strings), so
    that a resumed run knows the best model and does not overwrite ``best/`` with a worse one."""
    return {"best_metric": stats["best_metric"], "best_val_score": stats["best_val_score"],
            "best_val_accuracy": stats["best_val_accuracy"],
            "best_iteration": stats["best_iteration"],
            "best_model_folder": stats["best_model_folder"],
            "val_history": [[int(i), float(a)] for i, a in stats["val_history"]],
            "val_scores": [[int(i), float(a)] for i, a in stats["val_scores"]]}


def _restore_validation(stats: dict, saved: Optional[dict], out_dir: Path) -> None:
    if not saved or saved.get("best_metric") != stats["best_metric"]:
        return  # no validation yet, or best/ was chosen by another figure: start afresh
    for key in ("best_val_score", "best_val_accuracy", "best_iteration"):
        stats[key] = saved.get(key)
    best = out_dir / "best"
    stats["best_model_folder"] = str(best) if (best / "backbone.json").is_file() else None
    if stats["best_model_folder"] is None:  # best/ is gone: the next validation rewrites it
        stats["best_val_score"] = None
    stats["val_history"] = [tuple(v) for v in saved.get("val_history", [])]
    stats["val_scores"] = [tuple(v) for v in saved.get("val_scores", [])]


def _load_backbone(model: str, expected: str):
    """(backbone, ModelMeta) of a model folder (or pretrained name); the
    weights pass the model folder's checksum rule (``model_meta.verified_file``)."""
    from face_perception.recognition.model_folder import load_backbone
    from face_perception.recognition.model_meta import ModelMeta
    from face_perception.recognition.pretrained import resolve_model

    folder = resolve_model(model)
    meta = ModelMeta.load(folder)
    if meta.architecture != expected:
        raise ValueError(f"{folder} holds a {meta.architecture!r} backbone but this run "
                         f"trains {expected!r}")
    return load_backbone(folder, meta), meta


def _shard_head(head: nn.Module, cfg: TrainConfig, emb_size: int, shards: _Shards):
    """This process's slice of a head built for all classes (so that the shards together
    start from exactly the single-process weights)."""
    from face_perception.recognition.heads import get_head

    part = get_head(cfg.network_head, emb_size, shards.stop - shards.start, **cfg.head_kwargs())
    part.load_state_dict(distributed.shard_state(head.state_dict(), shards.keys, shards.start,
                                                 shards.stop))
    return part
