"""Backup and restore as real processes: a configuration made over HTTP on a running
server, backed up while the server keeps writing, restored into a new directory and
served again by a second server with the same answers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import ROOT, Process, free_ports, wait_for
from tests.devices.test_defined_meter import http_server

ADMIN_PWD = "backup and restore"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PWD}".encode()).decode()}

METER_DEF = b"""// An uploaded definition: one HTTP JSON document
{
  "rtype": 1, "mtype": 1, "name": "Backup test meter", "manufacturer": "Test",
  "dev_type": "backup_json",
  "power_w": {"address": "/data", "query": "p"},
  "current_l1": {"address": "/data", "query": "i[0]", "resolution": 1000},
  "current_l2": {"address": "/data", "query": "i[1]", "resolution": 1000},
  "current_l3": {"address": "/data", "query": "i[2]", "resolution": 1000},
  "import_wh": {"address": "/data", "query": "e"},
}
"""

# get_params figures that are measured or the clock, not configuration.
MEASURED_PARAMS = {"time", "cons_evse_power", "avail_evse_power", "cons_pwr", "prod_pwr",
                   "grid_pwr", "surplus_power", "cur_overdraft", "consumed_evse_power",
                   "remaining_evse_power", "cycle_time"}


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "chargebrain", *args], input=stdin,
                          capture_output=True, timeout=60, cwd=ROOT)


async def cli_async(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargebrain", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def call(http: aiohttp.ClientSession, p: Process, query: str, body: Any = None,
               raw: bytes | None = None) -> Any:
    if raw is not None:
        ctx = http.post(p.url(query), data=raw, headers=ADMIN)
    elif body is not None:
        ctx = http.post(p.url(query), json=body, headers=ADMIN)
    else:
        ctx = http.get(p.url(query), headers=ADMIN)
    async with ctx as resp:
        answer = await resp.json()
        assert resp.status == 200, (query, answer)
        return answer


async def configure(http: aiohttp.ClientSession, p: Process, meter_port: int) -> None:
    """A site of every kind of configuration, made through the API."""
    await call(http, p, f"cmd=change_admin_pwd&old_pwd=&new_pwd={ADMIN_PWD}")
    await call(http, p, "cmd=set_params", {
        "title": "Backup site", "max_total_current": 40000, "reserve_current": 2000,
        "min_pause_time": 600, "max_imbalance_cur": 16000})
    await call(http, p, "cmd=set_meter_def", raw=METER_DEF)
    devices = [
        {"dev_id": "E1", "device_enabled": 0},
        {"dev_type": "evse_group", "dev_id": "E10", "name": "Carport",
         "max_charging_cur": 20000},
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Left", "group": 10,
         "max_charging_cur": 32000, "used_phases": 7},
        {"dev_type": "evse_ajax", "dev_id": "E3", "name": "Right", "group": 10,
         "max_charging_cur": 16000, "phase_rotation": 120},
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid", "role": 3},
        {"dev_type": "meter_backup_json", "dev_id": "M4", "name": "sub-meter",
         "address": f"http://127.0.0.1:{meter_port}"},
        {"dev_type": "meter_expression", "dev_id": "M5", "name": "double",
         "expr": "M4.power_w * 2"},
    ]
    for dev in devices:
        await call(http, p, "cmd=set_params", {"devices": [dev]})
    for name, cards, dev_ids in (("Ann", ["04A1B2", "1234"], ["E2"]),
                                 ("Bob", ["FF00FF"], ["E2", "E3"])):
        uid = await call(http, p, "cmd=get_new_user_id")
        await call(http, p, "cmd=set_user", {
            "id": uid, "name": name, "dev_ids": dev_ids,
            "rfids": [{"id": c, "name": f"{name}'s card", "ac_ovch": c == "1234"}
                      for c in cards]})
    await call(http, p, "cmd=set_cm_vars&name=limit&val=16000")
    await call(http, p, "cmd=set_cm_vars&name=half&val=CM.limit / 2")


async def meter_reads(http: aiohttp.ClientSession, p: Process) -> dict[str, Any] | None:
    info = await call(http, p, "cmd=get_dev_info")
    m4 = next(d for d in info["devices"] if d["dev_id"] == "M4")
    return m4 if m4["com_err"] is False and m4["power_w"] == 1150 else None


async def configuration(http: aiohttp.ClientSession, p: Process) -> dict[str, Any]:
    """Every configuration answer of the API, without measurements and the clock."""
    params = await call(http, p, "cmd=get_params")
    info = await call(http, p, "cmd=get_dev_info")
    cm_vars = await call(http, p, "cmd=get_cm_vars")
    return {
        "devices": await call(http, p, "cmd=get_devices"),
        "params": {k: v for k, v in params.items() if k not in MEASURED_PARAMS},
        "users": await call(http, p, "cmd=get_users"),
        "cm_vars": [(v["name"], v["expr"]) for v in cm_vars["vars"]],
        "meter_defs": await call(http, p, "cmd=get_meter_defs"),
        "dev_info": [(d["dev_id"], d["dev_type"], d["name"], d["device_enabled"])
                     for d in info["devices"]],
    }


async def test_backup_while_running_restores_the_same_configuration(
        process: Process, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async def data(_request: web.Request) -> web.Response:
        return web.json_response({"p": 1150, "i": [5.0, 0, 0], "e": 4321})

    meter = web.Application()
    meter.router.add_get("/data", data)
    restored = Process(tmp_path / "restored", free_ports(1), free_ports(3))
    archive = tmp_path / "site.tar.gz"
    async with http_server(meter) as meter_port:
        process.start()
        await configure(http, process, meter_port)
        await wait_for(lambda: meter_reads(http, process), timeout=10)

        # A client keeps writing while the backup runs (the online backup's case).
        written: list[int] = []
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await call(http, process, f"cmd=set_cm_vars&name=counter&val={n}")
                written.append(n)

        task = asyncio.create_task(writer())
        await wait_for(lambda: len(written) >= 5, timeout=10)
        acknowledged_before = written[-1]
        code, output = await cli_async("backup", "--data", str(process.data), str(archive))
        stop.set()
        await task
        assert code == 0, output
        assert "Traceback" not in output
        before = await configuration(http, process)

        # The archive carries the uploaded definition and no live SQLite side files.
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        assert names[0] == "manifest.json"
        assert "meterdefs/meter_backup_json.json" in names
        assert not [n for n in names if n.endswith(("-wal", "-shm"))]

        result = cli("restore", "--data", str(restored.data), str(archive))
        assert result.returncode == 0, result.stderr
        try:
            restored.start()
            async with http.get(restored.url("cmd=get_users")) as resp:
                assert resp.status == 401  # the admin password came back too
            after = await configuration(http, restored)
            m4 = await wait_for(lambda: meter_reads(http, restored), timeout=10)
        finally:
            if restored.proc is not None:
                restored.stop()
    assert m4["dev_type"] == "meter_backup_json"

    # The counter is whatever the snapshot saw: at least what was acknowledged before
    # the backup started, at most the last write.
    counter = [expr for name, expr in after["cm_vars"] if name == "counter"]
    assert len(counter) == 1 and acknowledged_before <= counter[0] <= written[-1]
    for state in (before, after):
        state["cm_vars"] = [v for v in state["cm_vars"] if v[0] != "counter"]
    assert after == before
    assert ("M4", "meter_backup_json", "sub-meter", 1) in after["dev_info"]
    assert {d["dev_type"]: d["origin"] for d in after["meter_defs"]}[
        "meter_backup_json"] == "user"
    assert len(after["users"]) == 2 and after["cm_vars"][0] == ("limit", 16000)
    assert process.stop() == 0


def make_data_dir(data: Path) -> None:
    """A small data directory, made by the command line (no server needed)."""
    out = cli("set-password", "--data", str(data), "--stdin", stdin=b"secret one\n")
    assert out.returncode == 0, out.stderr
    (data / "meterdefs").mkdir()
    (data / "meterdefs" / "meter_backup_json.json").write_bytes(METER_DEF)


def one_line_error(out: subprocess.CompletedProcess[bytes]) -> str:
    err = out.stderr.decode()
    assert out.returncode != 0
    assert "Traceback" not in err + out.stdout.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def listing(path: Path) -> dict[str, Any]:
    """A directory's files and contents; the database's as its SQL dump."""
    out: dict[str, Any] = {}
    for file in sorted(path.rglob("*")):
        if file.name == "chargebrain.sqlite":
            db = sqlite3.connect(file)
            out[file.name] = list(db.iterdump())
            db.close()
        elif file.is_file():
            out[file.relative_to(path).as_posix()] = file.read_bytes()
    return out


def test_restore_refuses_a_directory_with_data_unless_forced(tmp_path: Path) -> None:
    make_data_dir(tmp_path / "data")
    archive = tmp_path / "b.tar.gz"
    assert cli("backup", "--data", str(tmp_path / "data"), str(archive)).returncode == 0
    assert archive.stat().st_mode & 0o077 == 0  # it holds the password hash and RFIDs
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    line = one_line_error(cli("restore", "--data", str(target), str(archive)))
    assert "--force" in line and str(target) in line
    assert listing(target) == {"notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "data", "target"]

    out = cli("restore", "--force", "--data", str(target), str(archive))
    assert out.returncode == 0, out.stderr
    assert listing(target) == listing(tmp_path / "data")
    assert target.stat().st_mode & 0o077 == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("target.before-restore-")]
    assert len(aside) == 1 and listing(aside[0]) == {"notes.txt": b"mine"}

    # An existing empty directory is restored into without --force; '-' is stdin.
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("restore", "--data", str(empty), "-", stdin=archive.read_bytes())
    assert out.returncode == 0, out.stderr
    assert listing(empty) == listing(tmp_path / "data")


def test_restore_refuses_a_directory_a_server_uses(process: Process, tmp_path: Path) -> None:
    make_data_dir(tmp_path / "source")
    archive = tmp_path / "b.tar.gz"
    assert cli("backup", "--data", str(tmp_path / "source"), str(archive)).returncode == 0
    process.start()
    line = one_line_error(cli("restore", "--force", "--data", str(process.data), str(archive)))
    assert "stop it first" in line
    assert not [p for p in tmp_path.iterdir() if "before-restore" in p.name]
    assert process.stop() == 0
    out = cli("restore", "--force", "--data", str(process.data), str(archive))
    assert out.returncode == 0, out.stderr


def test_damaged_or_foreign_archives_are_refused(tmp_path: Path) -> None:
    make_data_dir(tmp_path / "data")
    archive = tmp_path / "b.tar.gz"
    assert cli("backup", "--data", str(tmp_path / "data"), str(archive)).returncode == 0
    good = archive.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x55
    # The same manifest over other contents: only the checksums can tell.
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tar:
        for member, content in members:
            if member.name.startswith("meterdefs/"):
                content = content.replace(b"Backup test meter", b"Backup TEST meter")
            tar.addfile(member, io.BytesIO(content))
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(tmp_path / "data" / "meterdefs", arcname="meterdefs")
    cases = {
        "flipped": bytes(flipped),
        "truncated": good[: len(good) // 2],
        "forged": forged.read_bytes(),
        "foreign": foreign.read_bytes(),
        "not gzip": b"hello\n" * 100,
        "empty": b"",
    }
    target = tmp_path / "target"
    empty = tmp_path / "empty"
    empty.mkdir()
    for case, content in cases.items():
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(content)
        for where in (target, empty):
            line = one_line_error(cli("restore", "--data", str(where), str(bad)))
            assert "damaged or not a chargebrain backup" in line, (case, line)
        assert not target.exists() and list(empty.iterdir()) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "b.tar.gz", "bad.tar.gz", "data", "empty", "foreign.tar.gz", "forged.tar.gz"], case
    line = one_line_error(cli("restore", "--data", str(target), str(tmp_path / "missing.tgz")))
    assert "missing.tgz" in line
    # The good archive still restores.
    assert cli("restore", "--data", str(target), str(archive)).returncode == 0


def test_a_database_that_is_not_sound_is_refused(tmp_path: Path) -> None:
    make_data_dir(tmp_path / "data")
    archive = tmp_path / "b.tar.gz"
    assert cli("backup", "--data", str(tmp_path / "data"), str(archive)).returncode == 0
    # Rebuild the archive with a consistent manifest over a database that is not sound,
    # and over one that is another application's.
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        database = tar.extractfile("chargebrain.sqlite").read()  # type: ignore[union-attr]
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("PRAGMA user_version = 3")
    # An index that no longer matches its table: the file opens, integrity_check fails.
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(database)
    db = sqlite3.connect(broken)
    db.execute("INSERT INTO transactions (dev_id, user_id, start_time, start_wh) "
               "VALUES ('E1', 'someone', 0, 0)")
    db.commit()
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, '(user_id)', '(dev_id)') "
               "WHERE name = 'transactions_user'")
    db.commit()
    db.close()
    for name, content, expected in (("broken", broken.read_bytes(), "integrity"),
                                    ("other", other.read_bytes(), "not a chargebrain")):
        doc = dict(manifest)
        doc["files"] = [{"path": "chargebrain.sqlite", "size": len(content),
                         "sha256": hashlib.sha256(content).hexdigest()}]
        data = json.dumps(doc).encode()
        bad = tmp_path / f"{name}.tar.gz"
        with tarfile.open(bad, "w:gz") as tar:
            for member_name, blob in (("manifest.json", data), ("chargebrain.sqlite", content)):
                info = tarfile.TarInfo(member_name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        line = one_line_error(cli("restore", "--data", str(tmp_path / "target"), str(bad)))
        assert expected in line, line
        assert not (tmp_path / "target").exists()


def test_backup_errors_are_one_line(tmp_path: Path) -> None:
    line = one_line_error(cli("backup", "--data", str(tmp_path / "none"), str(tmp_path / "b")))
    assert "does not exist" in line
    (tmp_path / "nodb").mkdir()
    line = one_line_error(cli("backup", "--data", str(tmp_path / "nodb"), str(tmp_path / "b")))
    assert "no chargebrain database" in line
    make_data_dir(tmp_path / "data")
    line = one_line_error(cli("backup", "--data", str(tmp_path / "data"),
                              str(tmp_path / "no" / "dir" / "b.tar.gz")))
    assert "cannot write" in line
    line = one_line_error(cli("backup", "--data", str(tmp_path / "data"),
                              str(tmp_path / "data" / "b.tar.gz")))
    assert "inside the data directory" in line
    with open("/dev/full", "wb") as full:
        out = subprocess.run([sys.executable, "-m", "chargebrain", "backup", "--data",
                              str(tmp_path / "data"), "-"], stdout=full,
                             stderr=subprocess.PIPE, timeout=60, cwd=ROOT)
    assert out.returncode != 0 and b"No space left" in out.stderr
    assert b"Traceback" not in out.stderr
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.rglob(".*")) == []  # no temporary file is left behind
