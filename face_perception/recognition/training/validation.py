"""Validation during training on verification pairs, through the existing evaluation: a
verification ``.bin`` (``pair_eval.embed_bin``), an ImageFolder of aligned chips (seeded random
pairs) or a pairs list; metrics from ``verification.evaluate_verification``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from face_perception.recognition.training.data import read_image


class ModelEmbedder:
    """The Embedder interface (``meta``, ``embed_chips``) over the model being trained, so the
    evaluation code runs unchanged on it. ``flip_tta``: the embedding of a chip is the sum of
    those of the chip and its mirror image (test-time augmentation, as InsightFace's
    verification)."""

    def __init__(self, backbone: torch.nn.Module, meta, transform, device: str,
                 batch_size: int = 64, flip_tta: bool = False):
        self.backbone, self.meta, self.transform = backbone, meta, transform
        self.device, self.batch_size, self.flip_tta = device, batch_size, flip_tta
        self.dtype = next(backbone.parameters()).dtype  # float64 under precision: float64

    def embed_chips(self, chips_bgr) -> np.ndarray:
        was_training = self.backbone.training
        self.backbone.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(chips_bgr), self.batch_size):
                part = chips_bgr[s:s + self.batch_size]
                x = torch.from_numpy(np.stack([self.transform(c) for c in part]))
                emb = self.backbone(x.to(self.device, self.dtype))
                if self.flip_tta:
                    mirrored = np.stack([self.transform(c, flip=True) for c in part])
                    emb = emb + self.backbone(torch.from_numpy(mirrored).to(self.device,
                                                                            self.dtype))
                out.append(emb.float().cpu())
        self.backbone.train(was_training)
        emb = torch.cat(out).numpy() if out else np.zeros((0, self.meta.embedding_size))
        # float64: a briefly trained network in eval mode (batch-norm running statistics far
        # from the batch ones) can give features whose squares overflow float32
        emb = emb.astype(np.float64)
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return unit.astype(np.float32)


class ValidationSet:
    """Pairs to verify: decoded once, embedded at each validation."""

    def __init__(self, source, num_pairs: int = 1000, seed: int = 0):
        from face_perception.recognition.pair_eval import read_verification_pairs

        self.source = str(source)
        self.name = Path(self.source).stem or Path(self.source).name
        vset = read_verification_pairs(source, num_pairs, seed, balanced=True)
        self.kind, self.labels = vset.kind, vset.labels
        if self.kind == "bin":
            self.vbin = vset.vbin
            return
        # Training validates on chips as they are (no detector): pair lists' landmarks unused.
        self.images = {f: read_image(f) for f in vset.files}
        self.pairs = [(str(p.first), str(p.second)) for p in vset.pairs]

    def fold_problem(self, n_folds: int = 10) -> str:
        """Why the k-fold accuracy of this set means little ('' when it is fine): a fold with
        pairs of one kind only (a ``.bin`` stored with all same pairs first), whose threshold
        is then chosen on a different mixture."""
        folds = np.array_split(self.labels, min(n_folds, len(self.labels)))
        # a fold of one pair is one-kind by nature (tiny sets); look at the larger ones
        shares = [float(f.mean()) for f in folds if len(f) > 1]
        if shares and (min(shares) == 0.0 or max(shares) == 1.0):
            return (f"{self.source}: pairs are ordered (folds hold {min(shares):.2f} to "
                    f"{max(shares):.2f} same pairs), so its {len(folds)}-fold accuracy is "
                    "meaningless")
        return ""

    def evaluate(self, embedder: ModelEmbedder) -> dict:
        from face_perception.recognition.verification import evaluate_verification

        if self.kind == "bin":
            from face_perception.recognition.pair_eval import embed_bin

            emb = embed_bin(embedder, self.vbin)
            sims = np.sum(emb[0::2] * emb[1::2], axis=1)
        else:
            names = list(self.images)
            emb = dict(zip(names, embedder.embed_chips([self.images[n] for n in names])))
            sims = np.array([float(emb[a] @ emb[b]) for a, b in self.pairs])
        report = evaluate_verification(sims, self.labels, kind="similarity",
                                       n_folds=min(10, len(sims)))
        out = report.to_dict()
        out["dataset"] = self.source
        return out
