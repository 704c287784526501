"""The error every importer raises for a file it refuses."""
from __future__ import annotations


class ModelImportError(ValueError):
    """A source file that is not the format asked for, or not a model this package can run:
    the message names the file and what was wrong with it."""
