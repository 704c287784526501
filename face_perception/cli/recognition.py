"""Placeholder: sub-commands of this family are added by their issue's work."""


def register(sub) -> None:
    return None
