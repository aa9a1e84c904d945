"""`helpdesk-bridge run|demo|sandbox|migrate|status|check|customers|db copy`."""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import signal
import sys
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from bridge import loop
from bridge.app import Bridge, load_config
from bridge.config import ConfigError, Settings, load_settings, url_passwords
from bridge.customer_data import CustomerData, UnknownCustomer, done, ref_of
from bridge.helpdesk import HelpdeskLink, HelpdeskUnavailable, KeyRefused
from bridge.logs import add_secrets, redact, setup_logging
from bridge.memory import settle_imports
from bridge.registry import adapter_classes, build_adapters
from bridge.sandbox import DEFAULT_API_KEY, SandboxHelpdesk
from bridge.shards import SESSION_PREFIX, SHARDS, DifferentConfig, shard_of
from bridge.single_daemon import AnotherDaemon, while_no_daemon
from bridge.store import SchemaTooNew, Store, upgrade
from bridge.store.copying import CopyRefused, copy_database, describe
from bridge.store.models import seconds_since
from bridge.store.schema import alembic_config, current_revision

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_KEY_REFUSED = 3  # distinct, so a service manager can be told not to restart on it
EXIT_ANOTHER_DAEMON = 4  # another daemon works this database (SQLite holds one), or one
#                          with another helpdesk or bot configuration (PostgreSQL)
EXIT_LEASE_LOST = 5  # another daemon took the customers over (this one was frozen or cut off)

log = logging.getLogger("bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helpdesk-bridge",
                                     description="Your Eusate Helpdesk inside Telegram and Slack.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="the TOML config file")
    demo = commands.add_parser("demo", help="chat with the sandbox helpdesk in this terminal")
    demo.add_argument("--db", default="helpdesk-bridge-demo.db", help="SQLite file for the demo")
    sandbox = commands.add_parser("sandbox", help="run the sandbox helpdesk alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--key", default=DEFAULT_API_KEY, help="the API key it accepts")
    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--config", required=True)
    status = commands.add_parser("status", help="which daemon works the customers, and the "
                                                "queues")
    status.add_argument("--config", required=True)
    check = commands.add_parser("check", help="validate the config and test every connection")
    check.add_argument("--config", required=True)
    customers = commands.add_parser("customers", help="what the bridge holds about a person")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    listing = customer_commands.add_parser("list", help="every customer, a line each")
    listing.add_argument("--config", required=True)
    for name, help_text in (("show", "a customer and their conversations"),
                            ("export", "everything held about a customer, as JSON"),
                            ("forget", "erase everything held about a customer"),
                            ("block", "relay nothing a customer writes (they are told once)"),
                            ("unblock", "relay what a customer writes again")):
        one = customer_commands.add_parser(name, help=help_text)
        one.add_argument("customer", metavar="PLATFORM:ID",
                         help="e.g. telegram:123456789 or slack:T0123:U0456")
        one.add_argument("--config", required=True)
    database = commands.add_parser("db", help="the database itself")
    database_commands = database.add_subparsers(dest="db_command", required=True)
    copy = database_commands.add_parser(
        "copy", help="copy everything into another, empty database (daemons stopped)")
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="the database in use, e.g. sqlite+aiosqlite:///bridge.db")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="an empty database, e.g. postgresql+asyncpg://user:pw@host/db")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return loop.run(_run(load_config(args.config)))
        if args.command == "demo":
            return loop.run(_demo(Path(args.db)))
        if args.command == "sandbox":
            return loop.run(_sandbox(args.host, args.port, args.key))
        if args.command == "status":
            return loop.run(_status(load_config(args.config)))
        if args.command == "migrate":
            return loop.run(_migrate(load_config(args.config)))
        if args.command == "customers":
            return loop.run(_customers(load_config(args.config), args.customers_command,
                                       getattr(args, "customer", "")))
        if args.command == "db":
            return loop.run(_copy(args.source, args.target))
        return loop.run(_check(args.config))
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except AnotherDaemon as error:  # the demo's (run logs it in its own format)
        print(f"not starting: {error}", file=sys.stderr)
        return EXIT_ANOTHER_DAEMON
    except KeyboardInterrupt:
        return 130


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _log_tasks)


def _log_tasks() -> None:
    """SIGUSR1: what every task of the daemon waits on, in the log (a daemon that hangs)."""
    for task in asyncio.all_tasks():
        stack = io.StringIO()
        task.print_stack(limit=12, file=stack)
        log.warning("task %s:\n%s", task.get_name(), stack.getvalue())


async def _serve(bridge: Bridge, stop: asyncio.Event) -> int:
    """Run until a signal (or the console closing); fail plainly on a refused key."""
    try:
        await bridge.start()
    except SchemaTooNew as error:
        log.error("%s", error)
        return EXIT_FAILED
    except (AnotherDaemon, DifferentConfig) as error:
        log.error("not starting: %s", error)
        await bridge.stop()
        return EXIT_ANOTHER_DAEMON
    watchers = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(bridge.wait_closed())]
    for adapter in bridge.adapters:
        if hasattr(adapter, "closed"):
            watchers.append(asyncio.ensure_future(adapter.closed.wait()))
    code = 0
    while not any(w.done() for w in watchers):
        link = bridge.relay.link if bridge.relay is not None else None  # None: not started
        if link is not None and link.failure is not None and not link.connected:
            log.error("stopping: %s", link.failure)
            code = EXIT_KEY_REFUSED
            break
        await asyncio.wait(watchers, timeout=0.2)
    for watcher in watchers:
        watcher.cancel()
    await bridge.stop()
    if bridge.lost_lease:
        log.error("stopped: another daemon took customers of this one over")
        code = EXIT_LEASE_LOST
    return code


async def _run(settings: Settings) -> int:
    setup_logging(settings.logging.level, settings.logging.format, settings.secrets())
    stop = asyncio.Event()
    _stop_on_signals(stop)
    options = {"console": {"output": sys.stdout}}
    bridge = Bridge(settings, build_adapters(settings, **options))
    settle_imports()
    return await _serve(bridge, stop)


DEMO_BANNER = """\
helpdesk-bridge demo: you are a customer; a sandbox helpdesk runs in this process.
Write a message and press Enter. Try "hello", then "it is resolved", or "human".
Numbers pick a choice. Commands: /new /conversations /close /call /help /quit
Act as the agent: /agent <text>  /takeover [name]  /suggestclose  /autoclose
"""


async def _demo(db: Path) -> int:
    setup_logging("WARNING")
    sandbox = SandboxHelpdesk()
    url = await sandbox.start(port=0)
    settings = load_settings({
        "helpdesk": {"url": url, "api_key": DEFAULT_API_KEY, "connections": 1},
        "storage": {"url": f"sqlite+aiosqlite:///{db}"},
        "http": {"listen": "127.0.0.1:0"},
        "console": {"user": "demo-customer"},
    }, env={}, adapter_schemas={"console": adapter_classes()["console"].Settings})

    def latest_ticket() -> str:
        open_ones = [c for c in sandbox.conversations.values() if c.open]
        if not open_ones:
            raise LookupError("no open conversation yet: write a message first")
        return open_ones[-1].ticket_chat_id

    async def agent(text: str) -> str:
        await sandbox.agent_reply(latest_ticket(), text or "Hello from the agent.")
        return ""

    async def takeover(name: str) -> str:
        await sandbox.take_over(latest_ticket(), name or None)
        return ""

    async def suggest_close(_: str) -> str:
        await sandbox.suggest_close(latest_ticket())
        return ""

    async def auto_close(_: str) -> str:
        await sandbox.auto_close(latest_ticket())
        return ""

    extra = {"agent": agent, "takeover": takeover, "suggestclose": suggest_close,
             "autoclose": auto_close}
    console_class = adapter_classes()["console"]
    console = console_class(settings.adapters["console"], output=sys.stdout, extra_commands=extra)
    print(DEMO_BANNER)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        return await _serve(Bridge(settings, [console]), stop)
    finally:
        await sandbox.stop()


async def _sandbox(host: str, port: int, key: str) -> int:
    setup_logging("INFO")
    sandbox = SandboxHelpdesk(api_keys={key}, history=10_000)
    url = await sandbox.start(host=host, port=port)
    print(f"sandbox helpdesk on {url} (namespace /helpdesk)\n"
          f'point the bridge at it: [helpdesk] url = "{url}", api_key = "<the key you chose>"\n'
          f"act as an agent: curl -X POST {url}/sandbox/agent/reply "
          "-d '{\"ticket_chat_id\": \"...\", \"message\": \"hi\"}'; state: GET /sandbox/state",
          flush=True)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await stop.wait()
    await sandbox.stop()
    return 0


async def _migrate(settings: Settings) -> int:
    setup_logging(settings.logging.level, settings.logging.format, settings.secrets())
    store = Store.from_url(settings.storage.url.get_secret_value())
    try:
        await upgrade(store.engine)
        print(f"database schema at revision {await current_revision(store.engine)}")
        return 0
    except SchemaTooNew as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()


async def _customers(settings: Settings, command: str, ref: str) -> int:
    setup_logging("WARNING", secrets=settings.secrets())
    store = Store.from_url(settings.storage.url.get_secret_value())
    try:
        await upgrade(store.engine)
        data = CustomerData(store)
        if command == "list":
            print(f"{'customer':<40} {'since':<20} {'conversations':>13} {'open':>4}")
            for row in await data.list():
                print(f"{row['customer']:<40} {row['since']:%Y-%m-%d %H:%M:%S}  "
                      f"{row['conversations']:>13} {row['open']:>4}")
        elif command == "show":
            print(json.dumps(await data.show(ref), indent=2, ensure_ascii=False))
        elif command == "export":
            print(json.dumps(await data.export(ref), indent=2, ensure_ascii=False))
        else:
            print(await _change(store, data, command, await data.find(ref),
                                settings.storage.url.get_secret_value()))
        return 0
    except UnknownCustomer as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()


CHANGE_WAIT = 15.0  # seconds the CLI waits for the daemon to make a change


async def _change(store: Store, data: CustomerData, change: str, customer, url: str) -> str:
    """Made by the daemon working the customer, when one runs (it holds their rows in
    memory); else here, holding SQLite's lock so that none starts meanwhile."""
    async with while_no_daemon(url, partial(store.sessions, SESSION_PREFIX)) as alone:
        if alone:
            return await data.carry_out(change, customer)
    # for the daemon holding the customer's shard (SQLite's one daemon: shard 0)
    shard = shard_of(customer.id) if store.engine.dialect.name == "postgresql" else 0
    row = await store.forward({"kind": change, "customer_id": customer.id}, shard)
    deadline = asyncio.get_running_loop().time() + CHANGE_WAIT
    while await store.still_forwarded(row):
        if asyncio.get_running_loop().time() > deadline:
            return (f"asked the daemon working {ref_of(customer)} to {change} them; it has "
                    f"not yet, after {CHANGE_WAIT:.0f} s. It will as soon as it runs.")
        await asyncio.sleep(0.2)
    return done(change, customer) + " (done by the daemon working them)"


async def _copy(source: str, target: str) -> int:
    """`db copy`: said in terms of the databases' names, never their URLs (passwords)."""
    setup_logging("WARNING", secrets=[p for url in (source, target)
                                      for p in url_passwords(url)])
    print(f"copying {describe(source)} into {describe(target)}")
    try:
        counts = await copy_database(source, target, SESSION_PREFIX)
    except CopyRefused as error:
        print(f"not copied: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # the reason, never the URL (it may hold a password)
        print(f"not copied: {type(error).__name__}: {redact(str(error))}; the target is as "
              "it was", file=sys.stderr)
        return EXIT_FAILED
    for table, count in counts.items():
        print(f"  {table:<14} {count:>9} rows")
    print("checked: the target holds as many rows as the source in every table. Point "
          "[storage] url at it and start the daemons.")
    return 0


async def _status(settings: Settings) -> int:
    """What an operator asks first: who works the customers, and how much waits."""
    setup_logging("WARNING", secrets=settings.secrets())
    store = Store.from_url(settings.storage.url.get_secret_value())
    try:
        shards = await store.shard_holders()
        daemons = await store.sessions(SESSION_PREFIX)
        stats = await store.stats()
    except Exception as error:  # the reason, never the URL (it may hold a password)
        print(f"database: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    if store.engine.dialect.name != "postgresql":
        print("daemons: the one daemon SQLite holds (no shards)")
    else:
        unheld = SHARDS - len(shards)
        print(f"shards: {SHARDS}, held by {len(set(shards.values()))} daemons"
              + (f", {unheld} held by none" if unheld else ""))
    for daemon in daemons:
        held = sorted(shard for shard, holder in shards.items() if holder == daemon)
        print(f"daemon {daemon}: " + (f"works shards {_ranges(held)}" if held
                                      else "standing by"))
    for direction, label in (("to_helpdesk", "queued to helpdesk"),
                             ("to_customer", "queued to customer"),
                             ("forwarded", "forwarded between daemons")):
        count, oldest = stats[direction]
        age = f", oldest {seconds_since(oldest):.0f} s" if oldest else ""
        print(f"{label}: {count}{age}")
    print(f"customers: {stats['customers']}, open conversations: "
          f"{stats['open_conversations']}")
    return 0


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] as "0-2, 5"."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)


async def _check(path: str) -> int:
    """Everything the daemon needs, each with a plain verdict."""
    settings = load_config(path)  # a ConfigError exits 2 in main()
    add_secrets(settings.secrets())
    setup_logging("CRITICAL")
    results: list[tuple[bool, str]] = [(True, f"config {path} is valid")]
    results.append(await _check_database(settings))
    results.append(await _check_helpdesk(settings))
    results.append(await _check_calls(settings))
    for adapter in build_adapters(settings):
        try:
            results.append(await adapter.check())
        except Exception as error:
            results.append((False, f"{adapter.name}: {type(error).__name__}: {error}"))
    for ok, text in results:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    failed = [text for ok, text in results if not ok]
    print("verdict: ready to run" if not failed else f"verdict: {len(failed)} problem(s)")
    return 0 if not failed else EXIT_FAILED


async def _check_database(settings: Settings) -> tuple[bool, str]:
    from alembic.script import ScriptDirectory

    store = Store.from_url(settings.storage.url.get_secret_value())
    try:
        await store.ping()
        revision = await current_revision(store.engine)
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if revision == head:
            return True, f"database reachable, schema up to date ({head})"
        if revision is None:
            return True, "database reachable, empty (the daemon will create the schema)"
        return True, f"database reachable, schema {revision} will be migrated to {head}"
    except Exception as error:
        return False, f"database: {type(error).__name__}: {error}"
    finally:
        await store.close()


async def _check_helpdesk(settings: Settings) -> tuple[bool, str]:
    async def ignore(_event) -> None:
        return None

    helpdesk = settings.helpdesk
    link = HelpdeskLink(helpdesk.url, helpdesk.api_key.get_secret_value(), ignore,
                        namespace=helpdesk.namespace, connections=1,
                        request_timeout=helpdesk.request_timeout)
    await link.start()
    try:
        await link.wait_connected(timeout=min(helpdesk.request_timeout, 15))
        return True, f"helpdesk at {helpdesk.url} accepted the API key"
    except KeyRefused as error:
        return False, str(error)
    except HelpdeskUnavailable as error:
        return False, str(error)
    finally:
        await link.stop()


async def _check_calls(settings: Settings) -> tuple[bool, str]:
    """The LiveKit server must at least answer on its port; the browser does the rest."""
    url = settings.calls.livekit_url
    if not url:
        return True, "calls: not configured ([calls] livekit_url), /call says so"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port), timeout=5)
        writer.close()
    except (OSError, asyncio.TimeoutError) as error:
        return False, f"calls: the LiveKit server {parts.hostname}:{port} is not reachable " \
                      f"({type(error).__name__})"
    return True, f"calls: the LiveKit server {parts.hostname}:{port} answers; the call " \
                 f"page is {settings.http.public_url}/call"


if __name__ == "__main__":
    sys.exit(main())
