"""An ImageFolder of real faces for open-set tests and the docs' evaluation example.

Real people: obama (5 shipped photos), biden, scikit-image's astronaut and matplotlib's Grace
Hopper; each also gets augmented photos (mirror, lighting, small rotation, scale) so that every
identity has mated probes. Strangers: scikit-image's LFW subset (25 px crops of real people,
upsampled) and morphs (50/50 blends of two real people aligned onto one geometry).

    python -m test.open_set_photos DIR      # from the repository root
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from face_perception.alignment import align_to_template, dlib_chip_template

SHIPPED = {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg",
                     "obama_partial_face2.jpg"], "biden": ["biden.jpg"]}
CANVAS = 300  # side of the images morphs are drawn on (the face fills about half)


def extra_photos() -> dict:
    """{identity: path} of real faces other packages ship (those installed)."""
    out = {}
    try:
        import skimage
        out["astronaut"] = Path(skimage.__file__).parent / "data" / "astronaut.png"
    except ImportError:
        pass
    import matplotlib
    out["hopper"] = Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg"
    return {k: v for k, v in out.items() if v.is_file()}


def lfw_crops() -> list:
    """The 100 face crops of scikit-image's LFW subset as BGR images of 300 px (upsampled,
    edge-padded: the detector needs context), or [] without scikit-image."""
    try:
        import skimage
    except ImportError:
        return []
    faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")[:100]
    out = []
    for a in faces:
        grey = cv2.resize((a * 255).astype(np.uint8), (150, 150), interpolation=cv2.INTER_CUBIC)
        out.append(cv2.copyMakeBorder(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 75, 75, 75, 75,
                                      cv2.BORDER_REPLICATE))
    return out


def augmented(image: np.ndarray) -> dict:
    """Label -> a changed copy of a photo of the same person."""
    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0)
    return {
        "mirror": image[:, ::-1].copy(),
        "dark": np.clip(image.astype(np.float32) * 0.6, 0, 255).astype(np.uint8),
        "rotated": cv2.warpAffine(image, rot, (w, h), borderMode=cv2.BORDER_REFLECT),
        "half": cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
    }


def face_on_canvas(detector, image: np.ndarray) -> np.ndarray:
    """The largest face of ``image`` aligned into a CANVAS-pixel image (dlib geometry)."""
    from face_perception.recognition.photo_faces import find_face

    face, _ = find_face(detector, image)
    if face is None:
        raise ValueError("no face to morph")
    template = dlib_chip_template(CANVAS // 2, 0.25) + CANVAS / 4
    return align_to_template(image, face.landmarks, template, CANVAS, fit="image")


def build(dest, photos_dir, detector) -> Path:
    """Write the ImageFolder into ``dest`` (one sub-folder per person) and return it."""
    dest = Path(dest)
    sources = {name: [Path(photos_dir) / f for f in files] for name, files in SHIPPED.items()}
    sources.update({name: [p] for name, p in extra_photos().items()})
    canvases = {}
    for name, files in sources.items():
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        first = cv2.imread(str(files[0]))
        for f in files:
            cv2.imwrite(str(folder / (f.stem + ".jpg")), cv2.imread(str(f)))
        for label, img in augmented(first).items():
            cv2.imwrite(str(folder / f"{files[0].stem}_{label}.jpg"), img)
        canvases[name] = face_on_canvas(detector, first)
    for i, img in enumerate(lfw_crops()):
        (dest / f"lfw_{i:03d}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest / f"lfw_{i:03d}" / "face.png"), img)
    names = sorted(canvases)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            blend = cv2.addWeighted(canvases[a], 0.5, canvases[b], 0.5, 0)
            (dest / f"morph_{a}_{b}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dest / f"morph_{a}_{b}" / "face.png"), blend)
    return dest


if __name__ == "__main__":
    from face_perception.detection import Detector

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m test.open_set_photos DIR")
    from face_perception.data.sample_photos import sample_photos_dir as photos_dir

    print(build(sys.argv[1], photos_dir(), Detector()))
