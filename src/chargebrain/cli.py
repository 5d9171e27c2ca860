"""Command line: `chargebrain run …` starts the controller and charging manager;
`chargebrain set-password` sets the admin password; `chargebrain backup` and `chargebrain
restore` save and restore a data directory; `chargebrain simulate SCENARIO` runs a
simulated site against the charging manager (needs the `sim` extra)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import sys
from pathlib import Path

from chargebrain import package_version
from chargebrain.api import auth
from chargebrain.app import App, Config
from chargebrain.heap import HeapKeeper
from chargebrain.servers.access import AccessList
from chargebrain.servers.modbus_tcp import ListenError
from chargebrain.servers.mqtt.url import BrokerUrlError, masked, parse_broker_url
from chargebrain.servers.tls import TlsError
from chargebrain.store.archive import BackupError
from chargebrain.store.backup import backup, backup_to_stream
from chargebrain.store.datadir import DataDirBusyError
from chargebrain.store.opening import DataError, open_database
from chargebrain.store.restore import restore


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{port!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} out of range")
    return host.strip("[]") or "127.0.0.1", number


def _networks(text: str) -> AccessList:
    try:
        return AccessList.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _broker(text: str) -> str:
    if not text.strip():
        return ""
    try:
        parse_broker_url(text)
    except BrokerUrlError as exc:
        raise argparse.ArgumentTypeError(f"MQTT broker URL: {exc}") from None
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargebrain", description=__doc__)
    parser.add_argument("--version", action="version",
                        version=f"chargebrain {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the controller and the charging manager")
    run.add_argument("--data", type=Path, default=Path("chargebrain-data"),
                     help="data directory (default ./chargebrain-data)")
    run.add_argument("--http", type=_host_port, default=("127.0.0.1", 4712),
                     metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:4712)")
    run.add_argument("--modbus-port", type=int, default=4701, metavar="N",
                     help="Modbus TCP: EVSE on N, S0 meters on N+1, N+2; 0 = off")
    run.add_argument("--modbus-host", default="127.0.0.1", metavar="HOST",
                     help="address Modbus TCP listens on (default 127.0.0.1: this machine "
                          "only; it has no authentication)")
    run.add_argument("--modbus-allow", type=_networks, metavar="CIDR[,CIDR…]",
                     help="client networks admitted to Modbus TCP (default: loopback, "
                          "private and link-local addresses)")
    run.add_argument("--ocpp-port", type=int, metavar="N",
                     help="the OCPP 1.6J central system's port on the HTTP host; 0 = off "
                          "(default: the site parameter ocpp_srv_port, 19520)")
    run.add_argument("--sunspec-port", type=int, metavar="N",
                     help="the SunSpec Modbus TCP server's port on the Modbus host, with "
                          "its allowed networks; 0 = off (default: the site parameter "
                          "sunspec_port, 0)")
    run.add_argument("--tls-cert", type=Path, metavar="FILE",
                     help="serve HTTPS with this certificate (PEM; needs --tls-key)")
    run.add_argument("--tls-key", type=Path, metavar="FILE",
                     help="the private key of --tls-cert (PEM, without a passphrase)")
    run.add_argument("--tls-self-signed", action="store_true",
                     help="serve HTTPS with a self-signed certificate, made once in "
                          "DIR/tls/")
    run.add_argument("--mqtt", type=_broker, metavar="URL",
                     help="MQTT broker (mqtt://user:password@host:1883, mqtts://, mqtt5://); "
                          "stored as the site parameter mqtt_url, '' switches MQTT off")
    run.add_argument("--demo", action="store_true", help="run the simulated demo site")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")
    run.add_argument("--admin-password-file", type=Path, metavar="PATH",
                     help="set the admin password from the first line of this file")
    run.add_argument("--allow-insecure", action="store_true",
                     help="listen on a non-loopback address even without an admin password")
    pwd = sub.add_parser("set-password", help="set the admin password (HTTP user 'admin')")
    pwd.add_argument("--data", type=Path, default=Path("chargebrain-data"),
                     help="data directory (default ./chargebrain-data)")
    source = pwd.add_mutually_exclusive_group()
    source.add_argument("--password-file", type=Path, metavar="PATH",
                        help="read the password from the first line of this file")
    source.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of standard input")
    bak = sub.add_parser("backup", help="write a backup archive (.tar.gz) of a data "
                         "directory; safe while the server runs")
    bak.add_argument("--data", type=Path, default=Path("chargebrain-data"),
                     help="data directory (default ./chargebrain-data)")
    bak.add_argument("archive", metavar="FILE", help="the archive to write; - for stdout")
    res = sub.add_parser("restore", help="restore a backup archive into a new or empty data "
                         "directory; stop the server first")
    res.add_argument("--data", type=Path, default=Path("chargebrain-data"),
                     help="data directory (default ./chargebrain-data)")
    res.add_argument("--force", action="store_true", help="restore even if the directory "
                     "holds data; it is moved aside to DIR.before-restore-<time>")
    res.add_argument("archive", metavar="FILE", help="the archive to read; - for stdin")
    sim = sub.add_parser("simulate", help="run a simulated site: metrics table, CSV and PNG")
    sim.add_argument("scenario", nargs="?", help="a scenario file (JSON, or YAML ending in "
                     ".yaml or .yml) or a shipped scenario name")
    sim.add_argument("--schema", action="store_true",
                     help="print the JSON Schema of scenario files (for editors) and exit")
    sim.add_argument("--hours", type=float, metavar="H", help="simulate only the first H hours")
    sim.add_argument("--out", type=Path, default=Path("sim-out"),
                     help="directory for the CSV and PNG files (default ./sim-out)")
    sim.add_argument("--policy", default="manager",
                     choices=["manager", "core", "equal-split", "fcfs", "fuse-only", "all"],
                     help="what decides (default: the charging manager; all = compare)")
    sim.add_argument("--manager-cycle", type=float, metavar="S",
                     help="the charging manager's cycle in seconds (default 3, the vendor's); "
                          "the devices report at the scenario's cycle")
    sim.add_argument("--seed", type=int, metavar="N",
                     help="another seed for the scenario's random parts (household, clouds, "
                          "meter noise), to see how much a result owes to one draw")
    sim.add_argument("--plans", action="store_true",
                     help="every car announces its departure and energy need as it arrives "
                          "(exact departure plans, through its EVSE)")
    return parser


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _read_password(args: argparse.Namespace) -> str:
    """The new password from --password-file, stdin or a prompt; raises ValueError."""
    if args.password_file is not None:
        try:
            return _first_line(args.password_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {args.password_file}: {exc}") from None
    if args.stdin or not sys.stdin.isatty():
        return _first_line(sys.stdin.readline())
    first = getpass.getpass("New admin password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise ValueError("the passwords differ")
    return first


def _set_password(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args)
        if not password:
            raise ValueError("the password is empty")
        problem = auth.password_problem(password)
        if problem is not None:
            raise ValueError(problem)
    except ValueError as exc:
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_database(args.data)
    except DataError as exc:
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 2
    try:
        auth.set_admin_password(store, password)
    finally:
        store.close()
    print(f"chargebrain: admin password set in {args.data}")
    return 0


def _secure_start(app: App, password_file: Path | None, allow_insecure: bool) -> str | None:
    """Apply --admin-password-file; a reason not to start, or None."""
    if password_file is not None:
        try:
            password = _first_line(password_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read the admin password file {password_file}: {exc}"
        if not password:
            return f"the admin password file {password_file} is empty"
        try:
            auth.set_admin_password(app.store, password)
        except ValueError as exc:
            return f"admin password file {password_file}: {exc}"
    host = app.config.http_host
    if auth.is_loopback(host) or auth.admin_password_set(app.store):
        return None
    if allow_insecure:
        logging.getLogger("chargebrain").warning(
            "listening on %s without an admin password: every client is admin", host)
        return None
    return (f"refusing to listen on {host} without an admin password; set one with "
            f"'chargebrain set-password --data {app.config.data_dir}' or "
            "--admin-password-file PATH (or pass --allow-insecure)")


def _backup_or_restore(args: argparse.Namespace) -> int:
    """`chargebrain backup` and `chargebrain restore`; FILE `-` is stdout or stdin."""
    stdio = args.archive == "-"
    try:
        if args.command == "backup":
            if stdio and sys.stdout.isatty():
                raise BackupError("will not write an archive to a terminal; name a FILE")
            if stdio:
                manifest = backup_to_stream(args.data, sys.stdout.buffer)
            else:
                manifest = backup(args.data, Path(args.archive))
            print(f"chargebrain: backup of {args.data} written to "
                  f"{'standard output' if stdio else args.archive} ({len(manifest.files)} "
                  "files)", file=sys.stderr if stdio else sys.stdout)
            return 0
        if stdio and sys.stdin.isatty():
            raise BackupError("no archive on standard input; name a FILE")
        done = restore(sys.stdin.buffer if stdio else Path(args.archive), args.data,
                       force=args.force)
    except BackupError as exc:
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chargebrain: interrupted, nothing changed", file=sys.stderr)
        return 130
    aside = f"; the old contents are in {done.moved_aside}" if done.moved_aside else ""
    print(f"chargebrain: restored the backup of {done.manifest.created} (chargebrain "
          f"{done.manifest.chargebrain_version}) into {args.data}{aside}")
    return 0


def _log_exposure(app: App) -> None:
    """Say where the servers listen and who can reach them."""
    log = logging.getLogger("chargebrain")
    config = app.config
    log.info("HTTP API on %s://%s:%d/cnf?cmd=get_dev_info",
             "https" if app.tls else "http", config.http_host, app.http_bound_port)
    log.info("metrics for Prometheus on %s://%s:%d/metrics (%s)",
             "https" if app.tls else "http", config.http_host, app.http_bound_port,
             "public" if app.manager.site.metrics_public else "admin only")
    if app.manager.site.mqtt_url:
        log.info("MQTT broker %s: whoever may publish to its cfos_mqtt topics has the "
                 "admin's rights", masked(app.manager.site.mqtt_url))
    if app.tls is not None:
        log.info("HTTPS certificate %s, SHA-256 fingerprint %s", app.tls.cert,
                 app.tls.fingerprint)
    if app.ocpp_bound_port:
        log.info("OCPP 1.6J central system on %s://%s:%d/<ChargeBox ID>",
                 "wss" if app.ocpp_tls else "ws", app.ocpp_host, app.ocpp_bound_port)
        if not auth.is_loopback(app.ocpp_host) and not app.manager.site.ocpp_srv_password:
            log.warning("OCPP without a password (ocpp_srv_password): any device on the "
                        "network may connect as a configured charge point")
    allow = config.modbus_allow
    if app.sunspec_tcp is not None:
        unit = app.manager.site.sunspec_id
        log.info("SunSpec Modbus TCP on %s port %d: the site at unit %d, its devices at "
                 "unit %d%s", config.modbus_host, app.sunspec_port, unit, unit + 1,
                 "" if allow == AccessList.local() else f", only clients from {allow}")
        if not auth.is_loopback(config.modbus_host):
            log.log(logging.WARNING if allow.reaches_public() else logging.INFO,
                    "SunSpec has no authentication: clients from %s can write the site's "
                    "limits (--modbus-allow)", allow.describe())
    if not config.modbus_port:
        return
    log.info("Modbus TCP on %s: EVSE on port %d, S0 meters on %d and %d%s", config.modbus_host,
             config.modbus_port, config.modbus_port + 1, config.modbus_port + 2,
             "" if allow == AccessList.local() else f", only clients from {allow}")
    if auth.is_loopback(config.modbus_host):
        return
    log.log(logging.WARNING if allow.reaches_public() else logging.INFO,
            "Modbus TCP has no authentication: clients from %s can write the charging "
            "current (--modbus-allow)", allow.describe())


async def _run(config: Config, password_file: Path | None = None,
               allow_insecure: bool = False) -> int:
    # A stop asked for while starting is a clean stop once started, never a kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        app = App(config)
    except (DataDirBusyError, DataError) as exc:
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 2
    refusal = _secure_start(app, password_file, allow_insecure)
    if refusal is not None:
        app.store.close()
        print(f"chargebrain: {refusal}", file=sys.stderr)
        return 2
    try:
        await app.start()
    except (ListenError, TlsError, DataError) as exc:
        app.store.close()
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 2
    # What start-up made lives as long as the process, and so does what survives a full
    # collection: no garbage collection walks it again (a full collection over a
    # thousand devices held every thread for 150-250 ms).
    heap = HeapKeeper()
    heap.start()
    _log_exposure(app)
    await stop.wait()
    logging.getLogger("chargebrain").info("shutting down")
    heap.stop()
    await app.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The Modbus adapters report every failure as ModbusIOError to the code that handles
    # it; pymodbus's own warnings about the same failures would only be noise.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.command == "set-password":
        return _set_password(args)
    if args.command in ("backup", "restore"):
        return _backup_or_restore(args)
    if args.command == "simulate":
        from chargebrain.sim.compare import simulate_command

        if args.schema:
            from chargebrain.sim.scenario import json_schema

            print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
            return 0
        if args.scenario is None:
            print("chargebrain simulate: which scenario? (a file or a shipped name)",
                  file=sys.stderr)
            return 2
        return simulate_command(args.scenario, hours=args.hours, out=args.out,
                                policy=args.policy, manager_cycle_s=args.manager_cycle,
                                seed=args.seed, plans=args.plans)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "run":
        if not 0 <= args.modbus_port <= 65533:
            print("chargebrain: --modbus-port must be 0..65533", file=sys.stderr)
            return 2
        if not args.modbus_host.strip("[] "):
            print("chargebrain: --modbus-host needs an address (0.0.0.0 for all)",
                  file=sys.stderr)
            return 2
        if args.ocpp_port is not None and not 0 <= args.ocpp_port <= 65535:
            print("chargebrain: --ocpp-port must be 0..65535", file=sys.stderr)
            return 2
        if args.sunspec_port is not None and not 0 <= args.sunspec_port <= 65535:
            print("chargebrain: --sunspec-port must be 0..65535", file=sys.stderr)
            return 2
        if (args.tls_cert is None) != (args.tls_key is None):
            print("chargebrain: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        if args.tls_self_signed and args.tls_cert is not None:
            print("chargebrain: --tls-self-signed or --tls-cert, not both", file=sys.stderr)
            return 2
        host, port = args.http
        config = Config(args.data, host, port, args.modbus_port, args.demo,
                        modbus_host=args.modbus_host.strip("[]"),
                        modbus_allow=args.modbus_allow or AccessList.local(),
                        tls_cert=args.tls_cert, tls_key=args.tls_key,
                        tls_self_signed=args.tls_self_signed,
                        allow_insecure=args.allow_insecure, ocpp_port=args.ocpp_port,
                        sunspec_port=args.sunspec_port, mqtt_url=args.mqtt)
        return asyncio.run(_run(config, args.admin_password_file, args.allow_insecure))
    return 2


if __name__ == "__main__":
    sys.exit(main())
