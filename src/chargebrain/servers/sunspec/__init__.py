"""The charging manager's SunSpec Modbus server (docs/sunspec.md).

`layout.py` declares the models and their encoding, `chain.py` builds the two chains
(the site at the unit id, the published devices at unit id + 1) from the manager's
state, `server.py` answers requests and applies writes. The TCP side is the controller's
own server (servers/modbus_tcp.py) with this server's `respond` as its port's responder.
"""

from chargebrain.servers.sunspec.server import SunSpecServer

__all__ = ["SunSpecServer"]
