"""Meter definition files: cFos-style descriptions of meters chargebrain reads generically.

A definition is a JSON5-ish text with one object: global properties (`rtype`, `dev_type`,
`modbus_read`, ...) and one object per variable (`power_w`, `current_l1`, ...). This
package turns such a text into an immutable `MeterDefinition`, or refuses it with a
`MeterDefinitionError` naming the line and the field; it loads the bundled and user
definition directories and stores uploads. The modules, each with one purpose:

* `json5` — the reader that keeps the position of every key;
* `query` — the JSON query language of HTTP variables;
* `expressions` — `expr` variables and output templates in the formula language;
* `model` — the file's shape as pydantic models (what is valid, and the messages);
* `definition` — the checked, immutable values the driver uses;
* `parse` — text to definition, problems to one error with its line;
* `files` — directories, uploads, deletion.

Nothing here talks to a device.
"""

from chargebrain.devices.meterdef.definition import (
    KNOWN_VARIABLES,
    HttpAddress,
    InputDef,
    MeterDefinition,
    MType,
    OutputDef,
    RtuSettings,
    RType,
    TcpSettings,
    ValueType,
    Variable,
    WordOrder,
)
from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.expressions import (
    DefinitionValues,
    Expression,
    Template,
    parse_expression,
    parse_template,
)
from chargebrain.devices.meterdef.files import (
    builtin_definitions_dir,
    delete_user_definition,
    load_definition_file,
    load_definitions,
    save_user_definition,
)
from chargebrain.devices.meterdef.json5 import parse_json5
from chargebrain.devices.meterdef.model import json_schema
from chargebrain.devices.meterdef.parse import parse_definition
from chargebrain.devices.meterdef.query import Query, QueryMiss, parse_query

__all__ = [
    "KNOWN_VARIABLES",
    "DefinitionValues",
    "Expression",
    "HttpAddress",
    "InputDef",
    "MType",
    "MeterDefinition",
    "MeterDefinitionError",
    "OutputDef",
    "Query",
    "QueryMiss",
    "RType",
    "RtuSettings",
    "TcpSettings",
    "Template",
    "ValueType",
    "Variable",
    "WordOrder",
    "builtin_definitions_dir",
    "delete_user_definition",
    "json_schema",
    "load_definition_file",
    "load_definitions",
    "parse_definition",
    "parse_expression",
    "parse_json5",
    "parse_query",
    "parse_template",
    "save_user_definition",
]
