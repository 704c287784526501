"""Reference gallery for recognition: ``Gallery`` (identity -> sample embeddings, cosine search,
pickle-free files) is the one public API; see docs/gallery.md.

Modules: ``store`` (the Gallery, in memory), ``search`` (numpy/faiss top-k), ``file_format``
(.npz + JSON index on disk), ``validation`` (the error type and input rules).
"""
from face_perception.gallery.file_format import FORMAT_VERSION
from face_perception.gallery.store import Gallery, load_or_create
from face_perception.gallery.validation import GalleryError

__all__ = ["Gallery", "GalleryError", "load_or_create", "FORMAT_VERSION"]
