"""HTTP API: importing this package registers every `/cnf` command."""

from chargebrain.api import (  # noqa: F401
    cmd_cascade,
    cmd_history,
    cmd_manager,
    cmd_meterdefs,
    cmd_modbus,
    cmd_modbus_proxy,
    cmd_ocpp,
    cmd_plans,
    cmd_rules,
    cmd_schedules,
    cmd_sessions,
    cmd_system,
    cmd_users,
    cmd_vars,
)
