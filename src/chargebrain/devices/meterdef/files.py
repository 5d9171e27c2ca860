"""Definition files: the bundled directory, loading directories, storing and deleting uploads.

User files override bundled ones with the same dev_type; among user files declaring the
same dev_type, the one named `<dev_type>.json` wins. A broken bundled file is an error, a
broken user file is skipped (and reported) so one bad upload cannot hide the others.
Uploads are validated first, then written unchanged (comments kept) through a temporary
file, fsync and rename.

This module must never write anything outside the user definition directory it is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

from chargebrain.devices.meterdef.definition import (
    CHARGER_PREFIX,
    DEV_TYPE_PREFIX,
    MeterDefinition,
)
from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.parse import parse_definition

__all__ = [
    "builtin_definitions_dir",
    "delete_user_definition",
    "load_definition_file",
    "load_definitions",
    "save_user_definition",
]

log = logging.getLogger("chargebrain.devices.meterdef")

_DEV_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def builtin_definitions_dir() -> Path:
    """The directory of the definitions bundled with chargebrain."""
    return Path(__file__).resolve().parent.parent.parent / "meterdefs"


def load_definition_file(path: Path) -> MeterDefinition:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MeterDefinitionError(f"cannot read file: {exc.strerror}", source=path.name) from exc
    return parse_definition(text, source=path.name)


def _load_dir(
    directory: Path, strict: bool, errors: list[MeterDefinitionError] | None
) -> dict[str, MeterDefinition]:
    found: list[tuple[Path, MeterDefinition]] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(".json"))
    except OSError as exc:
        problem = MeterDefinitionError(f"cannot list {directory}: {exc.strerror or exc}")
        if strict:
            raise problem from None
        log.warning("skipping meter definitions: %s", problem)
        if errors is not None:
            errors.append(problem)
        return {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            found.append((path, load_definition_file(path)))
        except MeterDefinitionError as exc:
            if strict:
                raise
            log.warning("skipping meter definition: %s", exc)
            if errors is not None:
                errors.append(exc)
    # A file named after its dev_type wins over other files declaring the same dev_type.
    found.sort(key=lambda item: (item[0].stem == item[1].dev_type, item[0].name))
    result: dict[str, MeterDefinition] = {}
    for path, definition in found:
        if definition.dev_type in result:
            if strict:
                raise MeterDefinitionError(
                    f"dev_type {definition.dev_type!r} is defined twice", source=path.name
                )
            log.warning(
                "%s: dev_type %s also defined by another file; this one wins",
                path.name,
                definition.dev_type,
            )
        result[definition.dev_type] = definition
    return result


def load_definitions(
    builtin_dir: Path | None = None,
    user_dir: Path | None = None,
    *,
    errors: list[MeterDefinitionError] | None = None,
) -> dict[str, MeterDefinition]:
    """All definitions by dev_type; user files override bundled ones with the same dev_type.

    A broken bundled file raises MeterDefinitionError. A broken user file is skipped (logged,
    and appended to `errors` when given) so one bad upload cannot stop the others.
    """
    builtin = builtin_dir if builtin_dir is not None else builtin_definitions_dir()
    result = _load_dir(builtin, strict=True, errors=errors) if builtin.is_dir() else {}
    if user_dir is not None and user_dir.is_dir():
        result.update(_load_dir(user_dir, strict=False, errors=errors))
    return result


def save_user_definition(user_dir: Path, text: str | bytes) -> MeterDefinition:
    """Validate `text` and store it as `<user_dir>/<dev_type>.json`, atomically.

    Raises MeterDefinitionError (and changes nothing) when the text is not a valid definition;
    OSError when the file cannot be written (a partial file is never left behind).
    """
    definition = parse_definition(text)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    user_dir.mkdir(parents=True, exist_ok=True)
    target = user_dir / f"{definition.dev_type}.json"
    fd, tmp_name = tempfile.mkstemp(dir=user_dir, prefix=f".{definition.dev_type}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return definition


def delete_user_definition(user_dir: Path, dev_type: str) -> bool:
    """Remove the user file for `dev_type` (prefix optional); True if a file was removed."""
    if not dev_type.startswith((DEV_TYPE_PREFIX, CHARGER_PREFIX)):
        dev_type = DEV_TYPE_PREFIX + dev_type
    if not _DEV_TYPE_RE.fullmatch(dev_type):
        return False
    target = user_dir / f"{dev_type}.json"
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
