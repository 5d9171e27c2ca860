"""HTTP API: importing this package registers every `/cnf` command."""

from chargebrain.api import cmd_manager, cmd_meterdefs, cmd_modbus  # noqa: F401
