"""Command line: `chargebrain run …` starts the controller and charging manager."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from chargebrain.app import App, Config
from chargebrain.servers.modbus_tcp import PortInUseError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargebrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the controller and the charging manager")
    run.add_argument("--data", type=Path, default=Path("chargebrain-data"),
                     help="data directory (default ./chargebrain-data)")
    run.add_argument("--http", type=_host_port, default=("127.0.0.1", 4712),
                     metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:4712)")
    run.add_argument("--modbus-port", type=int, default=4701, metavar="N",
                     help="Modbus TCP: EVSE on N, S0 meters on N+1, N+2; 0 = off")
    run.add_argument("--demo", action="store_true", help="run the simulated demo site")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")
    return parser


async def _run(config: Config) -> int:
    app = App(config)
    try:
        await app.start()
    except PortInUseError as exc:
        app.store.close()
        print(f"chargebrain: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("chargebrain")
    log.info("HTTP API on http://%s:%d/cnf?cmd=get_dev_info", config.http_host,
             app.http_bound_port)
    if config.modbus_port:
        log.info("Modbus TCP: EVSE on port %d, S0 meters on %d and %d", config.modbus_port,
                 config.modbus_port + 1, config.modbus_port + 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await app.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "run":
        if not 0 <= args.modbus_port <= 65533:
            print("chargebrain: --modbus-port must be 0..65533", file=sys.stderr)
            return 2
        host, port = args.http
        config = Config(args.data, host, port, args.modbus_port, args.demo)
        return asyncio.run(_run(config))
    return 2


if __name__ == "__main__":
    sys.exit(main())
