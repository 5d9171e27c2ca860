"""CM variables survive a real restart of the process; temporary ones do not."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.conftest import Process


def get(process: Process, query: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(process.url(query), data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_tmp_variables_are_not_kept_across_a_restart(process: Process) -> None:
    process.start()
    assert get(process, "cmd=set_cm_vars&name=kept&val=12") == "ok"
    assert get(process, "cmd=set_cm_vars&name=gone&val=5&tmp=1") == "ok"
    assert get(process, "cmd=set_cm_vars&tmp=1",
               {"vars": [{"name": "kept", "expr": 99}, {"name": "f", "expr": "CM.kept * 2"}]}) \
        == "ok"
    assert get(process, "cmd=set_cm_vars", {"vars": [{"name": "g", "expr": "CM.kept + 1"}]}) \
        == "ok"
    names = {v["name"]: v for v in get(process, "cmd=get_cm_vars")["vars"]}
    assert names["kept"]["expr"] == 99 and names["kept"]["tmp"] is True
    assert process.stop() == 0
    process.start()
    values = get(process, "cmd=get_cm_vars")["vars"]
    assert [(v["name"], v["expr"], v["tmp"]) for v in values] == [
        ("kept", 12, False), ("g", "CM.kept + 1", False)]
    assert process.stop() == 0
