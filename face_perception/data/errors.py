"""The datasets' one error type (its own module so that every dataset module can import it
without importing the package's lazy export table, which names them all)."""


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used as given; the message names the path."""
