"""`python -m bench`: the benchmarks, each printing a table (bench/RESULTS.md has numbers).

    python -m bench                      # all three, at sizes that take a few minutes
    python -m bench scale --customers 1000 5000 10000
    python -m bench relay --rates 10 20 40 --db postgresql+asyncpg://postgres@127.0.0.1/test
    python -m bench limits --customers 300 --messages 1000
    python -m bench fairness --modes quiet one forty backlog [--floor]

--db: a SQLAlchemy URL (default: a temporary SQLite). limits runs in one process. relay:
the sandbox helpdesk and the local Bot API server run in the bench's process, the bridge
(and the echo bot it is compared with) in one of its own (relay --one-process: all in one);
fairness likewise (--one-process); scale runs the sandbox in a process of its own.
"""
from __future__ import annotations

import argparse
import asyncio
import os

from bench.database import database, databases, reset
from bench.fairness import MODES as FAIRNESS_MODES
from bench.fairness import floor as fairness_floor
from bench.fairness import run as fairness
from bench.relay import bridge_run, echo_floor, socketio_floor, split_run
from bench.scale import scale
from bench.telegram_limits import burst
from bridge.logs import setup_logging
from bridge.memory import settle_imports


def _backend(url: str) -> str:
    return url.split(":")[0].split("+")[0] if url else "sqlite"


def run_scale(args) -> None:
    print(f"\nscale: {os.cpu_count()} cores, {args.connections} helpdesk connections, "
          f"{_backend(args.db)}; sandbox in its own process; RSS: bridge + harness")
    print(f"{'customers':>9} {'open s':>8} {'opens/s':>8} {'RSS MB':>7} {'KB/cust':>8} "
          f"{'rejoin s':>9} {'reconnects':>10} {'peak/s':>6} {'CPU s bridge/sandbox':>21}")
    for count in args.customers:
        if args.db:
            reset(args.db)
        with database(args.db) as url:
            row = asyncio.run(scale(count, args.connections, url))
        print(f"{row['customers']:>9} {row['open_s']:>8.2f} {row['opens_per_s']:>8.1f} "
              f"{row['rss_total_mb']:>7.0f} {row['kb_per_customer']:>8.1f} "
              f"{row['rejoin_s']:>9.2f} {row['reconnects']:>10} {row['peak_attempts_1s']:>6} "
              f"{row['rejoin_cpu_bridge_s']:>10.2f}/{row['rejoin_cpu_sandbox_s']:<10.2f}",
              flush=True)


def run_relay(args) -> None:
    apart = not args.one_process
    print(f"\nrelay through Telegram: {args.customers} customers, {args.messages} messages "
          f"per run, {_backend(args.db)}; "
          f"{'bridge and echo bot in a process of their own' if apart else 'one process'}; "
          f"milliseconds")
    sio = asyncio.run(socketio_floor(300))["trip"]
    print(f"{'run':<22} {'offered/s':>9} {'done/s':>7} {'in p50':>8} {'in p99':>8} "
          f"{'out p50':>8} {'out p99':>8} {'trip p50':>9} {'trip p99':>9} {'CPU ms/msg':>10}")
    print(f"{'socket.io round trip':<22} {'':>9} {'':>7} {'':>8} {'':>8} {'':>8} {'':>8} "
          f"{sio[0]:>9.1f} {sio[1]:>9.1f}")
    for rate in args.rates:
        echo = asyncio.run(echo_floor(args.customers, rate, args.messages, apart))
        print(f"{'PTB echo bot':<22} {rate:>9.0f} {echo['rate']:>7.1f} {'':>8} {'':>8} {'':>8} "
              f"{'':>8} {echo['trip'][0]:>9.1f} {echo['trip'][1]:>9.1f} "
              f"{_cpu(echo['cpu_ms']):>10}", flush=True)
        for daemons in args.daemons:
            if daemons.endswith("apart"):
                with databases(args.db, int(daemons[:-len("apart")])) as urls:
                    row = asyncio.run(split_run(urls, args.customers, rate, args.messages))
                label = f"bridge, {len(urls)} apart"
            else:
                if args.db:
                    reset(args.db)
                with database(args.db) as url:
                    row = asyncio.run(bridge_run(url, args.customers, rate, args.messages,
                                                 apart, int(daemons)))
                label = "bridge" if daemons == "1" else f"bridge, {daemons} daemons"
            (in50, in99), (out50, out99), (trip50, trip99) = \
                row["inbound"], row["outbound"], row["trip"]
            print(f"{label:<22} {rate:>9.0f} {row['rate']:>7.1f} {in50:>8.1f} {in99:>8.1f} "
                  f"{out50:>8.1f} {out99:>8.1f} {trip50:>9.1f} {trip99:>9.1f} "
                  f"{_cpu(row['cpu_ms']):>10}")
            # added: the bridge's trip less the floors' (echo bot + socket.io), percentile by
            # percentile (the runs are apart, so message by message is not possible)
            added50, added99 = (trip50 - echo["trip"][0] - sio[0],
                                trip99 - echo["trip"][1] - sio[1])
            print(f"{'  bridge / floor; added':<22} {'':>9} {row['rate'] / echo['rate']:>6.2f}x "
                  f"{'':>8} {'':>8} {'':>8} {'':>8} {added50:>9.1f} {added99:>9.1f}", flush=True)


def _cpu(ms: float | None) -> str:
    """The peer process's CPU time per message: what caps its rate on one core."""
    return f"{ms:.2f}" if ms is not None else "-"


def run_limits(args) -> None:
    several = f", {args.daemons} daemons" if args.daemons > 1 else ""
    print(f"\nTelegram limits (30/s per bot; per chat 3 at once, then 1/s): "
          f"{args.messages} agent messages to {args.customers} chats at once, "
          f"{_backend(args.db)}{several}")
    if args.db:
        reset(args.db)
    with database(args.db) as url:
        row = asyncio.run(burst(url, args.customers, args.messages, args.daemons))
    print(f"{'delivered':>9} {'seconds':>8} {'msgs/s':>7} {'peak in 1 s':>11} {'429s':>5}")
    print(f"{row['delivered']:>9} {row['seconds']:>8.1f} {row['rate']:>7.1f} "
          f"{row['peak_1s']:>11} {row['refused_429']:>5}", flush=True)


def run_fairness(args) -> None:
    bot = "a bare python-telegram-bot echo bot" if args.floor else \
        f"the bridge, {_backend(args.db)}, Telegram by {args.telegram}"
    print(f"\nfairness: 50 customers chatting (one message each every 5 s) for 20 s, {bot}; "
          "their messages, milliseconds (queued: waiting in Telegram's queue)")
    print(f"{'mode':<8} {'messages':>8} {'p50':>8} {'p99':>8} {'max':>8} {'queued':>8} "
          f"{'in p99':>8} {'out p99':>8} {'429s':>5}")
    for mode in args.modes:
        if args.floor:
            if mode == "backlog":
                continue
            row = asyncio.run(fairness_floor(mode))
        else:
            if args.db:
                reset(args.db)
            with database(args.db) as url:
                row = asyncio.run(fairness(url, mode, backlog=args.backlog,
                                           receiving=args.telegram,
                                           one_process=args.one_process))
        cells = [_cell(row.get(key)) for key in
                 ("p50", "p99", "max", "queued_p99", "inbound_p99", "outbound_p99",
                  "refused_429")]
        print(f"{row['mode']:<8} {row['messages']:>8} " + " ".join(
            f"{cell:>{5 if n == 6 else 8}}" for n, cell in enumerate(cells)), flush=True)


def _cell(value) -> str:
    """A figure, or "-" where it does not apply."""
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--db", default="", help="SQLAlchemy URL (default: temporary SQLite)")
    commands = parser.add_subparsers(dest="bench")
    scale_args = commands.add_parser("scale")
    scale_args.add_argument("--customers", type=int, nargs="+", default=[100, 1000])
    scale_args.add_argument("--connections", type=int, default=8)
    relay_args = commands.add_parser("relay")
    relay_args.add_argument("--customers", type=int, default=50)
    relay_args.add_argument("--messages", type=int, default=300)
    relay_args.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40])
    relay_args.add_argument("--daemons", nargs="+", default=["1"],
                            help="daemons on the database (several: PostgreSQL, sharing "
                                 "the customers); CPU per message is all of theirs. 'Napart': "
                                 "N bridges with a bot and a database each, sharing the load "
                                 "uncoordinated (what N processes cost without coordination)")
    relay_args.add_argument("--one-process", action="store_true",
                            help="run the bridge and the echo bot in the bench's own loop")
    limits_args = commands.add_parser("limits")
    limits_args.add_argument("--customers", type=int, default=300)
    limits_args.add_argument("--messages", type=int, default=1000)
    limits_args.add_argument("--daemons", type=int, default=1,
                             help="several daemons on one PostgreSQL (--db), in this process")
    fairness_args = commands.add_parser("fairness")
    fairness_args.add_argument("--modes", nargs="+", choices=FAIRNESS_MODES,
                               default=list(FAIRNESS_MODES))
    fairness_args.add_argument("--backlog", type=int, default=100_000,
                               help="rows queued at start in the backlog mode")
    fairness_args.add_argument("--telegram", choices=("polling", "webhook"),
                               default="polling", help="how the bridge receives updates")
    fairness_args.add_argument("--one-process", action="store_true",
                               help="run the bridge in the bench's own loop, beside the "
                                    "stand-ins (as before session 16)")
    fairness_args.add_argument("--floor", action="store_true",
                               help="the same load on a bare python-telegram-bot echo bot")
    for sub in (scale_args, relay_args, limits_args, fairness_args):
        sub.add_argument("--db", default=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_logging("ERROR")
    settle_imports()  # the harness's own pauses would count against every run
    chosen = args.bench
    if chosen in (None, "scale"):
        run_scale(args if chosen else _defaults(args, "scale"))
    if chosen in (None, "relay"):
        run_relay(args if chosen else _defaults(args, "relay"))
    if chosen in (None, "limits"):
        run_limits(args if chosen else _defaults(args, "limits"))
    if chosen == "fairness":
        run_fairness(args)


def _defaults(args, name: str):
    defaults = {"scale": {"customers": [100, 1000], "connections": 8},
                "relay": {"customers": 50, "messages": 300, "rates": [10, 20, 40], "daemons": ["1"],
                          "one_process": False},
                "limits": {"customers": 300, "messages": 1000, "daemons": 1}}[name]
    return argparse.Namespace(db=args.db, **defaults)


if __name__ == "__main__":
    main()
