"""chargebrain: an open charging manager that speaks the cFos Power Brain API."""

__version__ = "0.1.0"


def package_version() -> str:
    """The installed distribution's version, or `__version__` when run from a source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chargebrain")
    except PackageNotFoundError:
        return __version__
