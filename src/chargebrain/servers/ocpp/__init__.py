"""The OCPP 1.6J central system: wallboxes connect here and are managed like every EVSE.

`adapter` is the only module that imports the `ocpp` and `websockets` libraries;
`messages` and `measurands` read and write OCPP 1.6 payloads as plain values; `session`
is one connected charge point; `server` is the central system (handshakes, sessions,
what the manager's sessions ask of the charge points). docs/ocpp.md describes it.
"""
