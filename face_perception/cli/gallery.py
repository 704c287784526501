"""``face-perception gallery``: inspect and edit a gallery file without loading any model.

    face-perception gallery show people.json [--json] [--sources]
    face-perception gallery check people.json
    face-perception gallery remove people.json NAME [NAME ...]
    face-perception gallery rename people.json OLD NEW
    face-perception gallery calibrate people.json --genuine DIR --strangers DIR [--target-fpir F]

Every command loads the gallery with the full checks of ``Gallery.load`` (checksum, shapes,
format version); edits are saved atomically in place. Only ``calibrate`` loads a model.
"""
from __future__ import annotations

import argparse
import json

from face_perception.cli import add_command
from face_perception.cli.inference_options import (
    add_inference_options,
    detector_from_args,
    embedder_from_args,
)
from face_perception.cli.messages import report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gallery", help="show, check, remove or rename identities in a gallery file",
        description="Inspect and edit a gallery (people.json + its arrays file) without a model.")
    sub = parser.add_subparsers(dest="gallery_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("show", help="model, sizes and identities of a gallery")
    p.add_argument("gallery", metavar="FILE")
    p.add_argument("--sources", action="store_true", help="list each sample's source too")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_show)

    p = sub.add_parser("check", help="verify checksum, shapes and format; exit 2 if damaged")
    p.add_argument("gallery", metavar="FILE")
    p.set_defaults(func=_check)

    p = sub.add_parser("remove", help="remove identities and save")
    p.add_argument("gallery", metavar="FILE")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_remove)

    p = sub.add_parser("rename", help="rename an identity and save")
    p.add_argument("gallery", metavar="FILE")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=_rename)

    p = add_command(sub, "calibrate", _calibrate,
                    "pick and store the open-set threshold and margin for a target FPIR")
    p.add_argument("gallery", metavar="FILE")
    p.add_argument("--genuine", required=True, metavar="DIR",
                   help="ImageFolder of enrolled people's photos that are not enrolled")
    p.add_argument("--strangers", required=True, nargs="+", metavar="PATH",
                   help="photos (files or folders, searched recursively) of people not enrolled")
    p.add_argument("--target-fpir", type=float, default=0.01,
                   help="share of strangers that may be named (0.01; needs >= 1/F strangers)")
    p.add_argument("--tracks", action="store_true",
                   help="also learn how tracks are named (docs/open_set.md#tracks): each "
                   "stranger photo is seen through 12 camera effects (size, blur, motion, JPEG, "
                   "turn); slower")
    p.add_argument("--model", default="dlib_resnet", help="the gallery's embedding model")
    add_inference_options(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the stored rule as JSON")


def _load(path):
    from face_perception.gallery import Gallery

    return Gallery.load(path)


def _show(args: argparse.Namespace) -> int:
    from face_perception.gallery import Gallery

    g = _load(args.gallery)
    index = Gallery.index_path(args.gallery)
    people = [{"name": n, "samples": g.count(n), **({"sources": g.sources(n)}
                                                     if args.sources else {})}
              for n in g.names]
    if args.json:
        print(json.dumps({"gallery": str(index), "model_id": g.model_id,
                          "embedding_size": g.embedding_size, "num_identities": len(g),
                          "num_samples": g.num_samples, "open_set": g.open_set,
                          "identities": people},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{index}: model {g.model_id}, {g.embedding_size}-d, {len(g)} identities, "
          f"{g.num_samples} samples")
    rule = g.open_set
    if rule is not None:
        ev = rule.get("evidence", {})
        print(f"  open-set rule: threshold {rule['threshold']:.4f}, margin {rule['margin']:g} "
              f"(calibrated: FPIR {ev.get('fpir')} of {ev.get('strangers')} strangers, FNIR "
              f"{ev.get('fnir')} of {ev.get('mated')} photos, at {ev.get('gallery_identities')} "
              "identities)")
    width = max((len(p["name"]) for p in people), default=0)
    for p in people:
        line = f"  {p['name']:<{width}}  {p['samples']} sample{'s' if p['samples'] != 1 else ''}"
        if args.sources:
            line += "  " + ", ".join(s or "-" for s in p["sources"])
        print(line)
    return 0


def _check(args: argparse.Namespace) -> int:
    g = _load(args.gallery)  # raises GalleryError (exit 2 with the reason) when damaged
    print(f"ok: {len(g)} identities, {g.num_samples} samples, model {g.model_id}, "
          f"{g.embedding_size}-d")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from face_perception.gallery import GalleryError

    g = _load(args.gallery)
    missing = [n for n in args.names if n not in g]
    if missing:  # check all first: a partial edit would surprise
        raise GalleryError(f"no identity named {', '.join(map(repr, missing))} in "
                           f"{args.gallery}; nothing removed")
    for name in dict.fromkeys(args.names):
        g.remove(name)
    # compact: rewrite the arrays so that the removed people's embeddings are physically gone
    # (a tombstone segment alone would leave them in the base file; docs/privacy.md).
    index = g.save(args.gallery, compact=True)
    print(f"removed {len(set(args.names))} identit{'y' if len(set(args.names)) == 1 else 'ies'}"
          f"; {index} now has {len(g)}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    g = _load(args.gallery)
    g.rename(args.old, args.new)
    index = g.save(args.gallery)
    print(f"renamed {args.old!r} to {args.new!r} in {index}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Measure the gallery against photos of strangers (--strangers) and other photos of its
    enrolled people (--genuine: one sub-folder per enrolled identity); store the threshold and
    margin that keep the share of strangers given a name at or below --target-fpir with the
    fewest missed names, plus the rates and counts, in the gallery file. Recognition (CLI, nodes,
    bag) uses them unless told otherwise."""
    from face_perception.recognition.open_set_eval import calibrate_gallery_from_photos
    from face_perception.recognition.recognizer import open_gallery_file

    embedder = embedder_from_args(args)
    g = open_gallery_file(args.gallery, embedder.meta)
    result = calibrate_gallery_from_photos(g, detector_from_args(args), embedder, args.genuine,
                                           args.strangers, args.target_fpir, tracks=args.tracks)
    index = g.save(args.gallery)
    ev = result["evidence"]
    if args.json:
        print(json.dumps({"gallery": str(index), **result}))
    else:
        print(f"stored in {index}: threshold {result['threshold']:.4f}, margin "
              f"{result['margin']:g} for FPIR <= {ev['target_fpir']:g} at {len(g)} identities")
        print(f"  strangers: {ev['stranger_names']} of {ev['strangers']} named (FPIR "
              f"{ev['fpir']:.4f}); enrolled people's photos: {ev['named_right']} of {ev['mated']} "
              f"named right, {ev['wrong_names']} wrong names, {ev['missed']} missed (FNIR "
              f"{ev['fnir']:.4f})")
        if "tracks" in result:
            print("  tracks: strangers' best similarity per quality band (mean, between-person "
                  "sd, within-person sd): " + "; ".join(
                      f"{name} {b['mean']:.3f}/{b['between']:.3f}/{b['within']:.3f} "
                      f"({b['views']} views)" for name, b in result["tracks"]["bands"].items()))
    for f in result["no_face"]:
        report("gallery calibrate", f"no face found in {f}", "note")
    return 0
