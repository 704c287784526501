"""``face-perception gallery``: inspect and edit a gallery file without loading any model.

    face-perception gallery show people.json [--json] [--sources]
    face-perception gallery check people.json
    face-perception gallery remove people.json NAME [NAME ...]
    face-perception gallery rename people.json OLD NEW

Every command loads the gallery with the full checks of ``Gallery.load`` (checksum, shapes,
format version); edits are saved atomically in place.
"""
from __future__ import annotations

import argparse
import json


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
                          "num_samples": g.num_samples, "identities": people},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{index}: model {g.model_id}, {g.embedding_size}-d, {len(g)} identities, "
          f"{g.num_samples} samples")
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
    index = g.save(args.gallery)
    print(f"removed {len(set(args.names))} identit{'y' if len(set(args.names)) == 1 else 'ies'}"
          f"; {index} now has {len(g)}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    g = _load(args.gallery)
    g.rename(args.old, args.new)
    index = g.save(args.gallery)
    print(f"renamed {args.old!r} to {args.new!r} in {index}")
    return 0
