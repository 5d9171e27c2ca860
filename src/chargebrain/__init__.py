"""chargebrain: an open charging manager that speaks the cFos Power Brain API."""

__version__ = "0.1.0"
