"""Meter definition files: cFos-style descriptions of meters chargebrain reads generically.

A definition is a JSON5-ish text with one object: global properties (`rtype`, `dev_type`,
`modbus_read`, ...) and one object per variable (`power_w`, `current_l1`, ...). This
package turns such a text into an immutable `MeterDefinition`, or refuses it with a
`MeterDefinitionError` naming the line and the field; it loads the bundled and user
definition directories and stores uploads. The modules, each with one purpose:

* `json5` — the reader that keeps the position of every key;
* `literals` — its strings and numbers, and their bounds;
* `query` — the JSON query language of HTTP variables;
* `expressions` — `expr` variables and output templates in the formula language;
* `model` — the file's shape as pydantic models (what is valid, and the messages);
* `charger` — the shape of a charger definition (mtype 8): its state map and actions;
* `values` — single values that are parsed (a variable's `map`, a few words);
* `definition` — the checked, immutable values the driver uses;
* `parse` — text to definition, problems to one error with its line;
* `files` — directories, uploads, deletion.

Nothing here talks to a device. The bounds a definition must keep are exported with the
rest (`MAX_*`); an `expr` is also bound by the formula language's own limits
(`chargebrain.core.formula.MAX_LENGTH` and `MAX_DEPTH`).
"""

from chargebrain.devices.meterdef.definition import (
    CP_STATES,
    KNOWN_VARIABLES,
    ChargerControl,
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
    WriteStep,
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
from chargebrain.devices.meterdef.json5 import MAX_NESTING, parse_json5
from chargebrain.devices.meterdef.literals import MAX_NUMBER_CHARS
from chargebrain.devices.meterdef.model import json_schema
from chargebrain.devices.meterdef.parse import (
    MAX_DEFINITION_CHARS,
    MAX_EXPRESSION_CHARS,
    MAX_EXPRESSIONS,
    MAX_VARIABLES,
    parse_definition,
)
from chargebrain.devices.meterdef.query import Query, QueryMiss, parse_query

__all__ = [
    "CP_STATES",
    "KNOWN_VARIABLES",
    "MAX_DEFINITION_CHARS",
    "MAX_EXPRESSIONS",
    "MAX_EXPRESSION_CHARS",
    "MAX_NESTING",
    "MAX_NUMBER_CHARS",
    "MAX_VARIABLES",
    "ChargerControl",
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
    "WriteStep",
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
