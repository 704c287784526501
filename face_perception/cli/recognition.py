"""``face-perception enroll | recognize | verify | embed | eval | align``: face recognition.

Thin wrappers over the core: Detector -> alignment -> Embedder -> Gallery (via Recognizer and
the enrolment helpers). Every command but ``align`` (whose chips are in the ArcFace template
whatever the model) takes ``--model`` (``dlib_resnet``, the pretrained model that needs no
network, or a model folder); all take ``--backend onnx|onnx-int8|torch`` and ``--device``
(cli/inference_options.py). A file that cannot be read or has no face gets a one-line message
and the others are still processed; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from face_perception.cli import add_command
from face_perception.cli.image_files import ImageFiles
from face_perception.cli.inference_options import (
    add_inference_options,
    add_open_set_options,
    detector_from_args,
    embedder_from_args,
    recognizer_from_args,
)
from face_perception.cli.messages import naming_file, report


def _report_files_here() -> None:
    """The commands print one line per skipped file themselves: keep the library's log lines
    about the same files (unreadable, no face) from doubling them."""
    for name in ("face_perception.recognition.photo_faces", "face_perception.learner"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _detector(args):
    _report_files_here()
    return detector_from_args(args, score_threshold=args.detector_threshold)


def _pipeline(args):
    return _detector(args), embedder_from_args(args)


# ------------------------------------------------------------------------------------ enroll
def run_enroll(args) -> int:
    """Enroll identities into a gallery. FOLDER has one sub-folder per person (its name is the
    identity); with --name, FOLDER (a folder or image files) holds photos of that one person. The
    largest face of each photo is enrolled; an existing gallery is extended. With --video FILE or
    --bag PATH --topic TOPIC and --name: the clip's main track (seen in most frames) is enrolled
    with its best distinct views (--max-views), each stored with its quality; refused when the
    track holds two people or the face already matches another identity (docs/gallery.md)."""
    from face_perception.enrolment import check_new_name, enrol_photos_into_file

    if sum(x is not None for x in (args.folder, args.video, args.bag)) != 1:
        raise ValueError("give exactly one of FOLDER (photos), --video FILE or --bag PATH")
    if args.name is not None:
        args.name = check_new_name(args.name)
    if args.video is not None or args.bag is not None:
        return run_enroll_clip(args)
    detector, embedder = _pipeline(args)
    done = enrol_photos_into_file(args.gallery, detector, embedder,
                                  [args.folder] + list(args.more or []), name=args.name,
                                  replace=args.replace, check_quality=not args.no_quality_check)
    r = done.report
    for f in r["no_face"]:
        report("enroll", f"no face found in {f}")
    for f, why in r["refused"]:
        report("enroll", f"refused {f}: {why} (use a sharper, larger, frontal photo, or "
               "--no-quality-check)")
    for f in r["unreadable"]:
        report("enroll", f"cannot read {f}")
    for f in r["several_faces"]:
        report("enroll", f"several faces in {f}; enrolled the largest", "note")
    if done.saved is None:
        report("enroll", f"no usable face in any image of {Path(args.folder)}; gallery not "
               "written")
        return 1
    _warn_look_alikes(done.saved.look_alikes)
    if args.json:
        print(json.dumps(done.to_dict()))
    else:
        print(f"enrolled {len(r['identities'])} identities from {r['embedded']} of "
              f"{r['images']} images into {done.saved.index} ({done.saved.identities} "
              f"identities, {done.saved.samples} samples)")
    return 1 if (r["no_face"] or r["unreadable"] or r["refused"]) else 0


def run_enroll_clip(args) -> int:
    """--video / --bag: the main track's best distinct views, each stored with its quality."""
    from face_perception.enrolment import enrol_clip_into_file

    if not args.name:
        raise ValueError("--video and --bag need --name (the person in the clip)")
    if args.bag is not None and not args.topic:
        raise ValueError("--bag needs --topic (the image topic, e.g. /camera/image_raw)")
    detector, embedder = _pipeline(args)
    clip = args.video if args.video is not None else args.bag
    done = enrol_clip_into_file(args.gallery, clip, detector, embedder, args.name,
                                topic=args.topic if args.bag is not None else None,
                                max_views=args.max_views, replace=args.replace,
                                allow_duplicate=args.allow_duplicate)
    result, saved = done.result, done.saved
    if saved is None:
        if args.json:
            print(json.dumps(done.to_dict()))
        report("enroll", f"nothing enrolled from {clip}: {result.reason}; gallery not written")
        return 1
    _warn_look_alikes(saved.look_alikes)
    if args.json:
        print(json.dumps(done.to_dict()))
    else:
        qualities = ", ".join(f"{q:.2f}" for q in result.selection.qualities)
        print(f"enrolled {len(result.selection.views)} views of {args.name!r} (track "
              f"{result.main_track}, seen in {result.track_frames} of {result.frames} frames; "
              f"qualities {qualities}) into {saved.index} ({saved.identities} identities, "
              f"{saved.samples} samples)")
    return 0


def _warn_look_alikes(similar) -> None:
    for a, b, sim in similar:
        report("enroll", f"{a!r} and {b!r} look alike (similarity {sim:.3f} >= naming "
               "threshold): faces of one may be named as the other", "warning")


# --------------------------------------------------------------------------------- recognize
def run_recognize(args) -> int:
    """Detect every face, identify it against the gallery by the open-set rule (similarity >=
    threshold and a margin over the second-best identity, else 'unknown'; docs/open_set.md).
    --json prints one JSON object per image; --out writes annotated images."""
    from face_perception.rendering import draw_faces

    detector = _detector(args)
    recognizer = recognizer_from_args(args, detector)

    def identify(image):
        faces = detector.detect(image)
        return faces, recognizer.identify(image, faces)

    files = ImageFiles("recognize", args.images, args.out, tag="recognized")
    if files.none_given():
        return 2
    for path, image, (faces, ids) in files.each(identify):
        results = []
        for face, cat in zip(faces, ids):
            entry = face.to_dict()
            entry["identity"] = cat.name if cat is not None else None
            entry["similarity"] = round(float(cat.confidence), 4) if cat is not None else None
            entry["second"] = (round(float(cat.extra["second"]), 4)
                               if cat is not None and cat.extra.get("second") is not None
                               else None)
            results.append(entry)
        record = {"image": str(path), "faces": results}
        files.write_annotated(path, record, draw_faces, image, faces, ids)
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            names = ", ".join(r["identity"] or "unknown" for r in results) or "no face"
            print(f"{path}: {names}")
            for r in results:
                x1, y1, x2, y2 = r["box"]
                sim = "" if r["similarity"] is None else f" (similarity {r['similarity']:.3f})"
                print(f"  {r['identity'] or 'unknown'}{sim}  box ({x1}, {y1}, {x2}, {y2})")
    return files.exit_code


# ------------------------------------------------------------------------------------ verify
def run_verify(args) -> int:
    """Compare the largest face of image A with that of image B: cosine similarity, the equivalent
    distance between the unit embeddings, the thresholds and the verdict."""
    from face_perception.enrolment.photos import embed_largest_faces

    detector, embedder = _pipeline(args)
    result = embed_largest_faces(detector, embedder, [Path(args.a), Path(args.b)])
    _report_skipped("verify", result)
    if len(result.files) != 2:
        return 1
    a, b = result.embeddings
    similarity = float(a @ b)
    threshold = float(embedder.meta.threshold if args.threshold is None else args.threshold)
    # Unit vectors: |a - b| = sqrt(2 - 2 cos); the same rule expressed as a distance.
    distance = float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity)))
    record = {
        "a": args.a, "b": args.b, "model": embedder.meta.name,
        "similarity": round(similarity, 4), "threshold": round(threshold, 4),
        "distance": round(distance, 4),
        "distance_threshold": round(float(np.sqrt(max(0.0, 2.0 - 2.0 * threshold))), 4),
        "same": similarity > threshold,
    }
    if args.json:
        print(json.dumps(record))
    else:
        verdict = "same person" if record["same"] else "different people"
        print(f"{verdict}: similarity {record['similarity']:.4f} (threshold "
              f"{record['threshold']:.4f}), distance {record['distance']:.4f} (threshold "
              f"{record['distance_threshold']:.4f})")
    return 0


# ------------------------------------------------------------------------------------- embed
def run_embed(args) -> int:
    """Embeddings of the largest face per image, saved as FILE.npz with arrays 'embeddings' (N x D
    float32, L2-normalised), 'images' (N paths) and 'model'; read it with numpy.load(FILE,
    allow_pickle=False)."""
    from face_perception.enrolment.photos import embed_largest_faces
    from face_perception.files import atomic_path

    detector, embedder = _pipeline(args)
    files = ImageFiles("embed", args.images)
    if files.none_given():
        return 2
    result = embed_largest_faces(detector, embedder, files.files)
    _report_skipped("embed", result)
    out = Path(args.output)
    names = np.array(result.files, dtype=str) if result.files else np.zeros(0, dtype="<U1")
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:  # a file object: savez adds no .npz
        np.savez(fh, embeddings=result.embeddings.astype(np.float32), images=names,
                 model=np.array(embedder.meta.name))
    print(f"wrote {len(result.files)} embeddings ({embedder.meta.embedding_size}-d, model "
          f"{embedder.meta.name}) to {out}")
    return 1 if (result.no_face or result.unreadable) else 0


def _report_skipped(command: str, result) -> None:
    """The files embed_largest_faces could not read or found no face in."""
    for f, why in result.unreadable:
        report(command, naming_file(f, why))
    for f in result.no_face:
        report(command, f"no face found in {f}")


# -------------------------------------------------------------------------------------- eval
def run_eval(args) -> int:
    """Evaluate on a verification .bin (lfw, cfp_fp, agedb_30, ...), an ImageFolder tree (random
    same/different pairs), an LFW-style pairs list (faces aligned from lfw_landmark.txt when it
    lies beside the list or --landmarks names it, else found by the detector) or an IJB-B/IJB-C
    folder (loose_crop/ + meta/: 1:1 template protocol, TAR at FAR 1e-6 .. 1e-1). Prints the
    metrics (JSON with --json) and writes the ROC curve PNG into --out. With --open-set
    (ImageFolder only): enrol --enroll photos of a share of the identities, the rest are
    strangers; FNIR at FPIR, rank-1, wrong and stranger names, DET curve PNG."""
    from face_perception.recognition.pair_eval import evaluate_verification_dataset

    if args.open_set:
        return run_eval_open_set(args)
    detector, embedder = _pipeline(args)
    out_dir = Path(args.out)
    name = Path(args.dataset).stem or "dataset"
    metrics = evaluate_verification_dataset(detector, embedder, args.dataset,
                                            num_pairs=args.num_pairs, seed=args.seed,
                                            images_root=args.images_root,
                                            roc_path=out_dir / f"roc_{name}.png",
                                            landmarks=args.landmarks)
    if args.json:
        print(json.dumps(metrics))
    else:
        # The library's summary, so the CLI warns where it does (e.g. unbalanced folds).
        print(f"{name} ({metrics['dataset_kind']}, model {metrics['model']}, model's "
              f"threshold {metrics['model_threshold']:.4f}):")
        for line in _report(metrics).summary().splitlines():
            print("  " + line)
        print(f"  faces: {metrics['alignment']}")
        print(f"  ROC curve: {metrics['roc_png']}")
    if metrics.get("pairs_note"):
        report("eval", metrics["pairs_note"], "note")
    if metrics["skipped_pairs"]:
        report("eval", f"{len(metrics['skipped_pairs'])} pairs skipped (an image without a "
               "face)", "note")
    return 0


def run_eval_open_set(args) -> int:
    from face_perception.open_set import resolve_rule
    from face_perception.recognition.open_set_eval import evaluate_open_set

    detector, embedder = _pipeline(args)
    rule, _ = resolve_rule(embedder.meta, None, args.threshold, args.margin)
    name = Path(args.dataset).name or "dataset"
    m = evaluate_open_set(detector, embedder, args.dataset, enroll=args.enroll,
                          known_fraction=args.known_fraction, seed=args.seed, rule=rule,
                          det_path=Path(args.out) / f"det_{name}.png")
    if args.json:
        print(json.dumps(m))
        return 0
    print(f"{name} open-set (model {m['model']}, {m['mode']} search): {m['gallery_identities']} "
          f"identities enrolled with {m['enroll_per_identity']} photo(s) each, "
          f"{m['mated_probes']} mated probes, {m['nonmated_probes']} strangers")
    print(f"  rank-1 identification rate: {m['rank1']:.4f}")
    for t in m["fnir_at_fpir"]:
        fnir = f"{t['fnir']:.4f} (threshold {t['threshold']:.4f})" if t["fnir"] is not None \
            else "n/a (" + t["reason"] + ")"
        print(f"  FNIR @ FPIR {t['fpir']:g} (margin {rule.margin:g}): {fnir}")
    for label, r in (("open-set rule", m["rule"]),
                     ("1:1 threshold alone", m["verification_threshold_only"])):
        print(f"  {label} (threshold {r['threshold']:.4f}, margin {r['margin']:g}): "
              f"{r['wrong_names']} wrong names, {r['stranger_names']} stranger names, "
              f"{r['missed']} missed")
    for a, b, sim in m["look_alikes"]:
        print(f"  look-alikes: {a} / {b} ({sim:.3f})")
    print(f"  DET curve: {m['det_png']}")
    return 0


def _report(metrics: dict):
    """The VerificationReport behind a metrics dict (its summary; the ROC arrays are not
    needed for it)."""
    from dataclasses import fields

    from face_perception.recognition.verification import TarAtFar, VerificationReport

    values = {f.name: metrics[f.name] for f in fields(VerificationReport) if f.name in metrics}
    values["tar_at_far"] = [TarAtFar(**t) for t in metrics["tar_at_far"]]
    empty = np.zeros(0)
    return VerificationReport(**values, roc_fpr=empty, roc_tpr=empty, roc_thresholds=empty)


# ------------------------------------------------------------------------------------- align
def run_align(args) -> int:
    """Write the largest face of every image of DATA (one sub-folder per person) as an
    ArcFace-template chip into DEST with the same structure. DEST must lie outside DATA; the
    source is never modified."""
    from face_perception.recognition.folder_alignment import align_image_folder

    done = align_image_folder(_detector(args), args.data, args.dest, crop_size=args.crop_size,
                              silent=True)
    for f in done["no_face"]:
        report("align", f"no face found in {f}")
    for f in done["unreadable"]:
        report("align", f"cannot read {f}")
    for f in done["several_faces"]:
        report("align", f"several faces in {f}; aligned the largest", "note")
    print(f"aligned {done['aligned']} of {done['images']} images into {done['dest']}")
    return 1 if (done["no_face"] or done["unreadable"]) else 0


# ---------------------------------------------------------------------------------- parsers
def _common(p, model: bool = True, threshold: bool = True) -> None:
    if model:
        p.add_argument("--model", default="dlib_resnet",
                       help="'dlib_resnet' (pretrained, no network; default) or a model "
                            "folder (backbone.json + backbone.pth)")
    add_inference_options(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--detector-threshold", type=float, default=0.5,
                   help="face detector score threshold (0.5)")
    if threshold:
        p.add_argument("--threshold", type=float, default=None,
                       help="cosine similarity above which faces match (default: the "
                            "model's own, e.g. 0.906 for dlib_resnet)")


def register(sub) -> None:
    p = add_command(sub, "enroll", run_enroll,
                    "add people to a gallery from photos, a video or a bag")
    p.add_argument("folder", metavar="FOLDER", nargs="?")
    p.add_argument("more", nargs="*", metavar="IMAGE", help=argparse.SUPPRESS)
    p.add_argument("--gallery", required=True, metavar="FILE",
                   help="gallery file (FILE.json + arrays); created if missing")
    p.add_argument("--name", help="enroll all photos as this one identity")
    p.add_argument("--replace", action="store_true",
                   help="replace identities that already exist instead of adding samples")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-quality-check", action="store_true",
                   help="photos: enrol small, blurred or turned faces too (refused by default)")
    p.add_argument("--video", metavar="FILE", help="enrol --name from this video clip")
    p.add_argument("--bag", metavar="PATH", help="enrol --name from this rosbag2 folder")
    p.add_argument("--topic", metavar="TOPIC", help="--bag: the image topic")
    p.add_argument("--max-views", type=int, default=5, metavar="N",
                   help="--video/--bag: at most N distinct views enrolled (5)")
    p.add_argument("--allow-duplicate", action="store_true",
                   help="--video/--bag: enrol even when the face already matches another "
                        "identity of the gallery")
    _common(p, threshold=False)

    p = add_command(sub, "recognize", run_recognize, "name the faces in images using a gallery")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--gallery", required=True, metavar="FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--out", metavar="DIR", help="write annotated images to this folder")
    _common(p, threshold=False)
    add_open_set_options(p)

    p = add_command(sub, "verify", run_verify,
                    "are the largest faces of two images the same person?")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--json", action="store_true")
    _common(p)

    p = add_command(sub, "embed", run_embed,
                    "write the largest face's embedding of each image to an .npz")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--output", "-o", required=True, metavar="FILE.npz")
    _common(p, threshold=False)

    p = add_command(sub, "eval", run_eval,
                    "verification (or --open-set identification) metrics on a dataset")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--num-pairs", type=int, default=1000,
                   help="pairs drawn from an ImageFolder (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for ImageFolder pairs")
    p.add_argument("--images-root", metavar="DIR",
                   help="image folder of a pairs list (default: the list's folder, or its "
                        "lfw/ sub-folder when there is one)")
    p.add_argument("--landmarks", metavar="FILE",
                   help="five points per image of a pairs list (lfw_landmark.txt format); "
                        "default: lfw_landmark.txt beside the list if present")
    p.add_argument("--out", default=".", metavar="DIR", help="where the ROC PNG goes (.)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--open-set", action="store_true",
                   help="open-set (1:N) identification evaluation of an ImageFolder")
    p.add_argument("--enroll", type=int, default=1, metavar="K",
                   help="--open-set: photos enrolled per known identity (1)")
    p.add_argument("--known-fraction", type=float, default=0.5, metavar="F",
                   help="--open-set: share of the identities with more than K photos that "
                        "are enrolled (0.5); all others are strangers")
    _common(p, threshold=False)
    add_open_set_options(p)

    p = add_command(sub, "align", run_align,
                    "align the largest face of each image of an ImageFolder tree into 112x112 "
                    "chips")
    p.add_argument("data", metavar="DATA")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--crop-size", type=int, default=112, help="chip side in pixels (112)")
    _common(p, model=False, threshold=False)

