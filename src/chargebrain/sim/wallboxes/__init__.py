"""Simulated wallboxes that implement their makers' register documentation.

Each simulated wallbox (`base.SimWallbox`) is the physical box, the car behind it and the
register map (or HTTP API, or UDP protocol) its maker documents, with the maker's quirks:
currents in A or 0.1 A, write-only registers, watchdogs and fail-safe currents that
apply when the master stops talking. The tests of the bundled charger definitions run
against them, and the simulator puts them into scenarios (`catalog.py`), so that the
charging manager is measured against the same devices.
"""
