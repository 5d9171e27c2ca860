"""chargebrain benchmarks: `python -m bench [--quick]` (or `make bench`)."""
