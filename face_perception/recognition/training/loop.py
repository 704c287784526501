"""The recognition training loop on the shared core (``face_perception.training``): backbone +
margin head (or partial FC) + focal/softmax loss, SGD or AdamW with the core's schedule,
gradient accumulation and clipping. A run is a sequence of small named steps (data, model,
optimizer, resume, loader, one step per iteration, the final model folder); reporting,
validation with the best model, and checkpoints are callbacks of the core."""
from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from face_perception.recognition.losses import per_sample_loss
from face_perception.recognition.model_folder import trained_meta, write_model_folder
from face_perception.recognition.training import checkpoint as ckpt
from face_perception.recognition.training import distributed
from face_perception.recognition.training.batchnorm import synchronise_batchnorm
from face_perception.recognition.training.class_sampling import ClassSampler
from face_perception.recognition.training.config import TrainConfig
from face_perception.recognition.training.data import (
    Augmentation,
    BatchOrder,
    BatchSampler,
    ChipTransform,
    TorchSet,
    open_training_set,
)
from face_perception.recognition.training.model import (
    TrainModel,
    optimizer_groups,
    starting_backbone,
)
from face_perception.recognition.training.partial_fc import PartialFC
from face_perception.training.callbacks import (
    Callbacks,
    Checkpointing,
    Reporting,
    RunState,
    Validation,
)
from face_perception.training.checkpoint import (
    Checkpoint,
    check_identity,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from face_perception.training.config import make_optimizer, process_threads, resolve_device, set_lr
from face_perception.training.progress import Progress


def loader_workers(num_workers: Optional[int]) -> int:
    """Data-loader processes: the configured number, or min(2, cores - 1)."""
    from face_perception.threads import usable_cores

    if num_workers is not None:
        return int(num_workers)
    return max(0, min(2, usable_cores() - 1))


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
    def _say(self, text: str) -> None:
        """A message for the user (not per step): only the main process, only when verbose."""
        if self._main and self.cfg.verbose and not self.cfg.silent:
            print(text, file=sys.stderr)

    def build_backbone(self):
        """The network this run starts from, before any step: (backbone, embedding_size,
        input_size, mean, std, color_order) (``model.starting_backbone``)."""
        *start, self._layout = starting_backbone(self.cfg)
        return tuple(start)

    # ------------------------------------------------------------------------------ run
    def fit(self) -> dict:
        from face_perception.threads import set_torch_threads

        self.device = resolve_device(self.cfg.device, stacklevel=4)
        self.threads = set_torch_threads(process_threads(self.cfg.threads))
        self.ctx = distributed.setup(self.device)
        self._main = self.ctx.is_main
        try:
            # Everything that can be wrong with the input is found before anything is written.
            self._open_data()
            self._open_validation()
            self._build_model()
            self._build_optimizer()
            start = self._resume()
            if self.ctx.is_main:
                ckpt.checkpoint_dir(self.out_dir).mkdir(parents=True, exist_ok=True)
                self.cfg.save(ckpt.checkpoint_dir(self.out_dir) / "config.yaml")
            self._wrap_model()
            loader = self._loader(start)
            self._train(start, loader)
            return self._finish()
        finally:
            self.ctx.close()

    def _open_data(self) -> None:
        """The training set, the batch order of this process and the run's iterations."""
        cfg, ctx = self.cfg, self.ctx
        self.tset = open_training_set(self.dataset)
        for note in self.tset.notes():
            self._say(note)
        self.order = BatchOrder(len(self.tset), cfg.batch_size, ctx.world, ctx.rank, cfg.seed,
                                cfg.drop_last, cfg.flip, where=str(self.tset.root))
        self.total = cfg.iters
        if cfg.epochs:
            self.total = max(1, cfg.epochs * self.order.per_epoch // cfg.accumulate)
        self.classes = list(self.tset.classes)
        self.out_dir = Path(cfg.temp_path)

    def _open_validation(self) -> None:
        """The validation sets (main process only: the others never validate)."""
        cfg = self.cfg
        self.validations = []
        if not self.ctx.is_main:
            return
        from face_perception.recognition.training.validation import ValidationSet

        self.validations = [ValidationSet(v, cfg.val_pairs, seed=cfg.seed)
                            for v in self.val_sources]
        for v in self.validations:
            problem = v.fold_problem()
            if problem:
                warnings.warn(f"{problem}; best/ is chosen by {cfg.best_metric}"
                              + (" (set best_metric: auc)" if cfg.best_metric ==
                                 "accuracy_mean" else ""), RuntimeWarning, stacklevel=3)

    def _new_head(self, num_classes: int) -> nn.Module:
        from face_perception.recognition.heads import get_head

        return get_head(self.cfg.network_head, self.emb_size, num_classes,
                        **self.cfg.head_kwargs())

    def _build_model(self) -> None:
        """Backbone and head (or this process's partial FC shard) on the device, seeded alike
        in every process."""
        cfg, ctx, device = self.cfg, self.ctx, self.device
        num_classes = len(self.classes)
        torch.manual_seed(cfg.seed)  # same initial weights in every process
        backbone, self.emb_size, size, mean, std, color = self.build_backbone()
        self.chip = (size, mean, std, color)  # what the network takes
        self.transform = ChipTransform(*self.chip)
        head = self._new_head(num_classes)
        self.meta = trained_meta(cfg.backbone, self.emb_size, size, mean, std, color,
                                 layout=self._layout)
        self.sharded = cfg.partial_fc and ctx.enabled
        if cfg.sample_rate < 1.0 and ctx.enabled and not self.sharded:
            raise ValueError(f"sample_rate {cfg.sample_rate} samples each process's shard of "
                             "the class centres: with several processes set partial_fc: true")
        self.pfc = None
        if self.sharded:
            self.pfc = PartialFC(self._new_head, head, num_classes, ctx, cfg.sample_rate,
                                 cfg.seed)
            head = self.pfc.head
        if ctx.enabled and cfg.sync_bn and cfg.mode != "head_only":
            backbone = synchronise_batchnorm(backbone, device)
        self.dtype = torch.float64 if cfg.precision == "float64" else torch.float32
        backbone.to(device, self.dtype)
        head.to(device, self.dtype)
        if cfg.channels_last and device.startswith("cuda"):
            backbone.to(memory_format=torch.channels_last)
        if cfg.mode == "head_only":
            backbone.requires_grad_(False)
        self.backbone, self.head = backbone, head
        self.identity = {"backbone": cfg.backbone, "network_head": cfg.network_head,
                         "embedding_size": self.emb_size, "num_classes": num_classes,
                         "input_size": list(size), "classes": self.classes,
                         "optimizer_name": cfg.optimizer, "sample_rate": cfg.sample_rate}

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        groups, names = optimizer_groups({"backbone": self.backbone, "head": self.head},
                                         cfg.weight_decay, cfg.decay_bn_and_bias)
        if self.pfc is not None:
            self.pfc.optimizer_names = names
        self.opt = make_optimizer(cfg.optimizer, groups, cfg.lr, momentum=cfg.momentum)
        self.trainable = [p for g in self.opt.param_groups for p in g["params"]]

    def _resume(self) -> int:
        """The iteration this run starts at: 0, or that of the checkpoint it resumes (whose
        weights, optimizer, RNG and validation state it takes)."""
        cfg, out_dir = self.cfg, self.out_dir
        self.stats = {"loss_history": [], "accuracy_history": [], "lr_history": [], "val": {},
                      "val_sets": {}, "val_history": [], "val_scores": [], "checkpoints": [],
                      "best_val_accuracy": None, "best_val_score": None,
                      "best_metric": cfg.best_metric, "best_iteration": None,
                      "best_model_folder": None, "start_iteration": 0,
                      "threads": self.threads}
        load = cfg.checkpoint_load_iter
        if cfg.resume and not load:
            load = ckpt.latest_iteration(out_dir, below=self.total)
            if not load:
                self._say(f"resume: no checkpoint in {ckpt.checkpoint_dir(out_dir)}; "
                          "starting at iteration 0")
        if not load:
            return 0
        if load >= self.total:
            raise ValueError(f"checkpoint_load_iter ({load}) must be below the run's "
                             f"{self.total} iterations")
        path = ckpt.checkpoint_path(out_dir, load)
        state = ckpt.read(path)
        check_identity(state, self.identity, defaults={"optimizer_name": "sgd",
                                                       "sample_rate": 1.0})
        self._restore(state)
        set_rng_state(state.rng)
        _restore_validation(self.stats, state.extra.get("validation"), out_dir)
        self._say(f"resumed from {path} at iteration {state.step}")
        self.stats["start_iteration"] = state.step
        return state.step

    def _restore(self, state: Checkpoint) -> None:
        """Load a checkpoint's weights and optimizer state (the whole head: this process keeps
        its shard under partial FC)."""
        head_state, opt_state = state.models["head"], state.optimizer
        if self.pfc is not None:
            head_state, opt_state = self.pfc.shard(head_state, opt_state)
        try:
            self.backbone.load_state_dict(state.models["backbone"])
            self.head.load_state_dict(head_state)
            self.opt.load_state_dict(opt_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"{state.path} does not fit this run: {exc}") from None

    def _wrap_model(self) -> None:
        """The module one step runs: backbone and head (DDP-wrapped with several processes);
        under partial FC the head is ``self.pfc``, outside it."""
        cfg, ctx = self.cfg, self.ctx
        if self.pfc is not None:
            self.sampler = self.pfc.sampler
            self.model = TrainModel(self.backbone, None, self.dtype)
        else:
            self.sampler = ClassSampler(cfg.sample_rate, len(self.classes), cfg.seed, ctx.rank)
            keys = frozenset(distributed.class_keys(self.head.state_dict(), len(self.classes)))
            self.model = TrainModel(self.backbone, self.head, self.dtype, self.sampler, keys)
        self.runner = self.model
        self.is_ddp = ctx.enabled and any(p.requires_grad for p in self.model.parameters())
        if self.is_ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.local_rank] if self.device.startswith("cuda") else None
            self.runner = DDP(self.model, device_ids=ids)

    def _loader(self, start: int):
        cfg = self.cfg
        augment = Augmentation(cfg.aug_crop, cfg.aug_photometric, cfg.aug_low_res)
        return torch.utils.data.DataLoader(
            TorchSet(self.tset, self.transform, augment),
            batch_sampler=BatchSampler(self.order, start, self.total, cfg.accumulate),
            num_workers=loader_workers(cfg.num_workers),
            pin_memory=cfg.pin_memory and self.device != "cpu",
            # its own generator: creating the loader must not draw from the global RNG,
            # or a resumed run would diverge from the uninterrupted one
            generator=torch.Generator().manual_seed(cfg.seed))

    def _train(self, start: int, loader) -> None:
        """Iterations ``start`` .. total, each followed by the callbacks."""
        cfg = self.cfg
        self.amp = cfg.amp and self.device.startswith("cuda") and self.dtype == torch.float32
        self.bf16 = cfg.precision == "bfloat16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        progress = Progress(cfg.logging_path, self.total, start, cfg.silent, self.ctx.is_main,
                            verbose=cfg.verbose)
        self.reporting = Reporting(progress, {"loss": "loss_history",
                                              "accuracy": "accuracy_history",
                                              "lr": "lr_history"})
        self.checkpointing = Checkpointing(cfg.checkpoint_after_iter, "step",
                                           self._save_checkpoint)
        callbacks = Callbacks([self.reporting, self._validation(progress), self.checkpointing])
        run = RunState(total=self.total, step=start, stats=self.stats)
        batches = iter(loader)
        try:
            for k in range(start, self.total):
                lr = cfg.learning_rate(k, self.total)
                set_lr(self.opt, lr)
                loss, accuracy, images = self._step(k, batches)
                run.step, run.images = k + 1, images
                run.scalars = {"loss": loss, "accuracy": accuracy, "lr": lr}
                callbacks.on_step(run)
                progress.restart_clock()  # images/s counts training steps only
            callbacks.on_train_end(run)
        finally:
            progress.close()

    def _step(self, k: int, batches) -> tuple:
        """One optimizer step of ``accumulate`` micro-batches: (loss, accuracy, images)."""
        cfg = self.cfg
        self.model.train()
        if cfg.mode == "head_only":
            self.backbone.eval()  # frozen: batch-norm statistics stay as trained
        self.opt.zero_grad(set_to_none=True)
        loss_value = accuracy = 0.0
        images = 0
        for j in range(cfg.accumulate):
            part_loss, part_acc, n = self._micro_batch(k, j, next(batches))
            loss_value += part_loss / cfg.accumulate
            accuracy += part_acc / cfg.accumulate
            images += n * self.ctx.world
        if cfg.clip_grad_norm:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.trainable, cfg.clip_grad_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss_value, accuracy, images

    def _autocast(self, device_type: str):
        if self.amp:
            return torch.autocast("cuda")
        if self.bf16:
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _micro_batch(self, k: int, j: int, batch) -> tuple:
        """Forward and backward of micro-batch ``j`` of iteration ``k``: (its loss, its
        accuracy, its images), the figures averaged over processes."""
        cfg, device, dtype, ctx = self.cfg, self.device, self.dtype, self.ctx
        x, y = batch
        self.sampler.at(k, j)
        x = x.to(device, dtype, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if cfg.channels_last and device.startswith("cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        last = j == cfg.accumulate - 1
        # DDP all-reduces gradients on the last micro-batch only
        sync = self.runner.no_sync() if self.is_ddp and not last else contextlib.nullcontext()
        with sync:
            with self._autocast(x.device.type):
                emb, logits, y_logits = self.runner(x, y)
            if self.pfc is not None:
                ce, correct = self.pfc(emb.to(dtype), y)
                loss = per_sample_loss(ce, cfg.loss).mean()
                part_loss, part_acc = float(loss.detach()), float(correct.mean())
            else:
                ce = nn.functional.cross_entropy(logits.to(dtype), y_logits, reduction="none")
                loss = per_sample_loss(ce, cfg.loss).mean()
                part_loss = distributed.mean_over_processes(float(loss.detach()), ctx)
                part_acc = distributed.mean_over_processes(
                    float((logits.argmax(1) == y_logits).float().mean()), ctx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at iteration {k}; "
                                         "lower lr")
            self.scaler.scale(loss / cfg.accumulate).backward()
        return part_loss, part_acc, len(y)

    # ------------------------------------------------------------------------------ callbacks
    def _head_states(self) -> tuple:
        """(head state, optimizer state) with the whole head (a collective under partial FC)."""
        if self.pfc is not None:
            return self.pfc.whole(self.opt)
        return self.head.state_dict(), self.opt.state_dict()

    def _save_checkpoint(self, done: int) -> Path:
        cfg = self.cfg
        path = ckpt.checkpoint_path(self.out_dir, done)
        head_state, opt_state = self._head_states()  # collective
        if self.ctx.is_main:
            save_checkpoint(path, Checkpoint(
                kind=ckpt.KIND, epoch=done * cfg.accumulate // self.order.per_epoch, step=done,
                models={"backbone": self.backbone.state_dict(), "head": head_state},
                optimizer=opt_state, identity=self.identity, rng=rng_state(),
                scheduler={"lr": cfg.lr, "schedule": cfg.lr_schedule, "stages": cfg.stages,
                           "warmup": cfg.warmup_iters, "total": self.total},
                extra={"validation": _validation_state(self.stats)}))
            ckpt.prune_checkpoints(self.out_dir, cfg.keep_checkpoints)
        return path

    def _validation(self, progress: Progress) -> Optional[Validation]:
        """Validation every ``val_after`` iterations and at the end; best/ is the model with the
        highest mean of ``best_metric`` over the sets (AUC by default: it needs no folds)."""
        if not self.validations:
            return None
        from face_perception.recognition.training.validation import ModelEmbedder

        cfg = self.cfg
        embedder = ModelEmbedder(self.backbone, self.meta, ChipTransform(*self.chip), self.device,
                                 flip_tta=cfg.val_flip)
        several = len(self.validations) > 1

        def evaluate(done: int) -> dict:
            results = {}
            for v in self.validations:
                metrics = v.evaluate(embedder)
                metrics["iteration"] = done
                results[v.source] = metrics
                name = v.name if several else ""
                progress.scalars(done, {"accuracy": metrics["accuracy_mean"],
                                        "auc": metrics["auc"],
                                        "accuracy_at_threshold":
                                            metrics["accuracy_at_threshold"]},
                                 f"val/{name}/" if name else "val/")
                progress.message(f"iteration {done}: validation{' ' + name if name else ''} "
                                 f"accuracy {metrics['accuracy_mean']:.4f}, AUC "
                                 f"{metrics['auc']:.4f}")
            first = results[self.validations[0].source]
            score = float(np.mean([m[cfg.best_metric] for m in results.values()]))
            self.stats["val"], self.stats["val_sets"] = first, results
            self.stats["val_history"].append((done, first["accuracy_mean"]))
            self.stats["val_scores"].append((done, score))
            return {"score": score, "first": first}

        def on_best(done: int, result: dict) -> None:
            first = result["first"]
            self.stats["best_val_score"], self.stats["best_iteration"] = result["score"], done
            self.stats["best_val_accuracy"] = first["accuracy_mean"]
            meta = copy.deepcopy(self.meta)
            meta.threshold = float(np.clip(first["threshold"], -1, 1))
            # The best backbone is what verification measured; the head is kept with it
            # only when it is whole in this process.
            folder = write_model_folder(self.out_dir / "best", self.backbone, meta,
                                        None if self.sharded else self.head,
                                        cfg.network_head, self.classes)
            self.stats["best_model_folder"] = str(folder)

        validation = Validation(cfg.val_after, "step", evaluate, score=lambda r: r["score"],
                                on_best=on_best, final=True)
        validation.restore(self.stats["best_val_score"])
        return validation

    # ------------------------------------------------------------------------------ result
    def _finish(self) -> dict:
        """The trained model (whole head), its model folder and the run's figures."""
        cfg, stats = self.cfg, self.stats
        full_head = self.pfc.full_head(self.opt) if self.pfc is not None else self.head
        self.backbone = self.backbone.eval()
        self.head = full_head.eval() if full_head is not None else None
        if stats["val"]:
            self.meta.threshold = float(np.clip(stats["val"]["threshold"], -1, 1))
        if self.ctx.is_main:
            self.model_folder = write_model_folder(self.out_dir / "model", self.backbone,
                                                   self.meta, self.head, cfg.network_head,
                                                   self.classes)
        rates = self.reporting.rates
        stats.update({
            "train_loss": stats["loss_history"][-1] if stats["loss_history"] else None,
            "train_accuracy": (stats["accuracy_history"][-1] if stats["accuracy_history"]
                               else None),
            "iterations": self.total, "num_classes": len(self.classes),
            "num_images": len(self.tset),
            "images_per_s": float(np.median(rates)) if rates else None,
            "model_folder": str(self.out_dir / "model"), "world_size": self.ctx.world,
            "checkpoints": self.checkpointing.paths})
        return stats


def train(config: TrainConfig, dataset=None, val_dataset=None) -> dict:
    """Run one training; returns the stats dict (see ``Trainer``)."""
    return Trainer(config, dataset, val_dataset).fit()


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
