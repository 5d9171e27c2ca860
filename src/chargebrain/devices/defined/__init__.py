"""Drivers' shared parts for devices described by a definition file (meters, chargers):
where they are reached (`links`), raw data to values and back (`decode`), reading the
variables (`reader`) and running a charger's write steps (`writer`)."""
