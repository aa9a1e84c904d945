"""`python -m bench.chaos [--db URL] [--messages 1000] [--customers 50] [--minutes 8] [--explain]
[--daemons N --lease S] [--telegram polling|webhook]`

A two-way load between customers on a local Bot API server and the sandbox helpdesk,
through a real `helpdesk-bridge run` process (Telegram adapter, long polling), while:
- the bridge is killed with SIGKILL at 10 random moments and started again;
- the sandbox helpdesk is restarted 3 times (every connection dropped, state kept);
- the Bot API server answers sendMessage with 429 (retry_after 1) and 502 now and then.
Customers write `--messages` messages (each a unique marker); SATE answers every one it
receives and an agent answers every 4th too, so the load is 2.25 x messages both ways.
Then, both ways, it counts each marker: lost (never arrived) and twice (arrived more than
once), and prints them. It stops by itself after --minutes at the latest, and says if it
had to.

What it cannot make zero, and counts apart: the helpdesk API has no idempotency key, so a
message the helpdesk took just before a SIGKILL, whose acknowledgement the bridge never
stored, is sent again after the restart; the same holds for a Telegram message ("twice,
sent at a kill": a copy before the last reached the far end within the second before a
SIGKILL). And Socket.IO does not replay what the helpdesk sends while the bridge is down,
nor does the API offer a history to fetch it from: an answer sent while no bridge was in
the room ("sent while the bridge was down", seen by the sandbox at the moment it sent it)
can never arrive; nor can one the bridge had received but not yet stored when it was
killed: server events have no acknowledgement in this API ("in flight at a kill":
emitted within the second before a SIGKILL). "lost" and "twice" are everything else, and
must be 0.

With --daemons N (PostgreSQL), N daemons share the database, and the customers' shards
between them (bridge/shards.py). The kills hit any of them (each one's count for the
windows when it worked customers); one daemon is also frozen (SIGSTOP) for twice the lease,
and at the end every daemon is replaced in turn (start a new one, SIGTERM the old). Each
takeover's time is printed (target: at most the lease + 2 s). With --telegram webhook each
daemon listens on its own port behind a round-robin balancer (bench/balancer.py), so most
updates reach a daemon that does not work their customer, which stores them for the one
that does (bridge/forwarding.py).

Each loss and each double is printed with its timeline: when it was emitted (or each copy
arrived), into a room with which sockets of which run of the bridge, and the nearest
SIGKILL and helpdesk restart. --explain prints the same for every message counted in one
of the protocol's windows, so a window that hides a real loss can be seen.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.balancer import RoundRobin
from bench.database import reset
from bench.fleet import Fleet
from bridge.sandbox import NAMESPACE, SandboxHelpdesk
from testing.fake_telegram import FakeTelegram
from testing.local import free_port

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
MARKER = re.compile(r"c\d+n\d+x")
AGENT_SAYS = "Agent answer about"
AGENT_EVERY = 4  # an agent answers every 4th message too


class WatchedSandbox(SandboxHelpdesk):
    """SATE answers every message; an agent also answers every AGENT_EVERY-th one, a moment
    later. Notes, for each answer, when it was emitted and whether anyone was in the room to
    hear it: Socket.IO does not replay an event sent while the bridge is down (killed and
    restarting), and the helpdesk offers no history to fetch it from afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.emitted: dict[tuple[str, str], float] = {}  # (sate|agent, marker) -> when
        # (sate|agent, marker) -> the Socket.IO sids in the room it was emitted into
        self.listeners: dict[tuple[str, str], list[str]] = {}
        self.heard: set[tuple[str, str]] = set()
        self.received_at: dict[str, list[float]] = {}  # marker -> when each copy came
        self.connected_at: dict[str, float] = {}  # sid -> when it connected
        # (agent, marker) -> replies the agent gave: one per SATE answer it follows, so
        # two when the message came twice
        self.agent_replies: Counter = Counter()
        self.restarted_at: list[float] = []

    async def _on_connect(self, sid: str, environ: dict, auth=None) -> None:
        await super()._on_connect(sid, environ, auth)
        self.connected_at[sid] = time.monotonic()

    async def restart(self) -> None:
        self.restarted_at.append(time.monotonic())
        await super().restart()

    def _message(self, conversation, text: str, sender: str, *args, **kwargs) -> dict:
        if sender == "customer" and MARKER.fullmatch(text):
            self.received_at.setdefault(text, []).append(time.monotonic())
        return super()._message(conversation, text, sender, *args, **kwargs)

    @property
    def unheard(self) -> set[tuple[str, str]]:
        return set(self.emitted) - self.heard

    async def _sate_says(self, conversation, text: str, **flags: bool) -> None:
        await super()._sate_says(conversation, text, **flags)
        found = MARKER.search(text)
        if found and int(found.group()[found.group().index("n") + 1:-1]) % AGENT_EVERY == 0:
            self._tasks.start(self._agent_answers(conversation.ticket_chat_id, found.group()))

    async def _agent_answers(self, ticket_chat_id: str, marker: str) -> None:
        await asyncio.sleep(0.3)
        await self.agent_reply(ticket_chat_id, f"{AGENT_SAYS} {marker}")
        self.agent_replies["agent", marker] += 1

    async def _emit(self, event: str, payload: dict, room: str) -> None:
        data = payload.get("data") if isinstance(payload, dict) else None
        text = str(data.get("message", "")) if isinstance(data, dict) else ""
        found = MARKER.search(text)
        if found:
            key = ("agent" if text.startswith(AGENT_SAYS) else "sate", found.group())
            self.emitted.setdefault(key, time.monotonic())
            members = self.sio.manager.rooms.get(NAMESPACE, {}).get(room)
            if members:
                self.heard.add(key)
                self.listeners.setdefault(key, list(members))
        await super()._emit(event, payload, room)


def write_config(folder: Path, sandbox_url: str, telegram_url: str, db: str,
                 lease_seconds: float, name: str = "chaos", port: int = 0,
                 webhook_url: str = "") -> Path:
    """webhook_url: Telegram in webhook mode, its updates posted there (the balancer in
    front of the daemons); otherwise long polling."""
    config = folder / f"{name}.toml"
    config.write_text(f'''
[helpdesk]
url = "{sandbox_url}"
api_key = "${{CHAOS_KEY}}"
request_timeout = 3
connections = 4
[storage]
url = "{db or f"sqlite+aiosqlite:///{folder / 'chaos.db'}"}"
[http]
listen = "127.0.0.1:{port}"
public_url = "{webhook_url}"
[logging]
level = "WARNING"
[cluster]
lease_seconds = {lease_seconds}
[telegram]
token = "{TOKEN}"
api_url = "{telegram_url}"
poll_timeout = 1
mode = "{'webhook' if webhook_url else 'polling'}"
''')
    return config


async def chaos(messages: int, customers: int, minutes: float, db: str, seed: int,
                daemons: int = 1, lease_seconds: float = 5, webhook: bool = False) -> dict:
    rng = random.Random(seed)
    sandbox, telegram = WatchedSandbox(), FakeTelegram(TOKEN)
    await sandbox.start(port=0)
    await telegram.start()
    deadline = time.monotonic() + minutes * 60
    ports: dict[int, int] = {}  # webhook mode: each daemon's own, behind the balancer
    balancer = RoundRobin(lambda: [ports[daemon.index] for daemon in fleet.daemons])
    with tempfile.TemporaryDirectory() as folder:
        if webhook:
            await balancer.start()

            def config_for(index: int) -> Path:
                ports[index] = free_port()
                return write_config(Path(folder), sandbox.url, telegram.url, db, lease_seconds,
                                    name=f"chaos-{index}", port=ports[index],
                                    webhook_url=balancer.url)
        else:
            shared = write_config(Path(folder), sandbox.url, telegram.url, db, lease_seconds)

            def config_for(_index: int) -> Path:
                return shared
        fleet = Fleet(config_for, daemons, db)
        await fleet.start()
        if webhook:  # until then, updates would wait for a getUpdates nobody sends
            await telegram.wait_for(lambda: telegram.webhook, timeout=30)
        load_seconds = messages / 8  # ~8 messages/s: well inside what the bridge sustains
        events = _schedule(rng, load_seconds, several=daemons > 1)
        started = time.monotonic()
        sent = 0
        restarts = 0
        injected = 0
        chores: list[asyncio.Task] = []  # a freeze runs beside the load
        try:
            while sent < messages and time.monotonic() < deadline:
                now = time.monotonic() - started
                while events and events[0][0] <= now:
                    _, what = events.pop(0)
                    if what == "kill":
                        await fleet.kill_one(rng)
                    elif what == "freeze":
                        chores.append(asyncio.create_task(
                            fleet.freeze_working(2 * lease_seconds)))
                    elif what == "helpdesk":
                        await sandbox.restart()
                        restarts += 1
                    else:
                        telegram.fail("sendMessage", 429, "Too Many Requests: retry after 1",
                                      retry_after=1)
                        telegram.fail("sendMessage", 502, "Bad Gateway")
                        injected += 2
                customer = sent % customers
                telegram.say(30_000 + customer, f"c{customer}n{sent}x")
                sent += 1
                await asyncio.sleep(1 / 8)
            await asyncio.gather(*chores)
            if daemons > 1:
                await fleet.roll()
            # let it drain: until every answer the helpdesk gave is shown, or nothing has
            # moved for a minute (what is left will not come), or the deadline
            progress, quiet_since = None, time.monotonic()
            while time.monotonic() < deadline and not _settled(sandbox, telegram, sent) \
                    and time.monotonic() - quiet_since < 60:
                now_progress = (len(_received(sandbox)), sum(_shown(telegram).values()))
                if now_progress != progress:
                    progress, quiet_since = now_progress, time.monotonic()
                await asyncio.sleep(0.5)
            timed_out = time.monotonic() >= deadline
        finally:
            await fleet.stop()
            await balancer.stop()
            await telegram.stop()
            await sandbox.stop()
        counts = _count(sandbox, telegram, sent, customers, fleet.moments, started)
        if _went_wrong(counts):  # keep what the daemons said (and the SQLite file)
            kept = Path(tempfile.mkdtemp(prefix="chaos-"))
            for path in [*fleet.logs(), Path(folder) / "chaos.db", Path(folder) / "chaos.db-wal"]:
                if path.exists():
                    shutil.copy(path, kept)
            counts["kept"] = str(kept)
    return {**counts, "sent": sent, "kills": fleet.kills, "daemons": daemons,
            "freezes": len(fleet.moments["SIGSTOP"]), "takeovers": fleet.takeovers,
            "helpdesk_restarts": restarts, "errors_injected": injected,
            "passed_on": balancer.retried,
            "seconds": time.monotonic() - started, "timed_out": timed_out}


def _went_wrong(counts: dict) -> bool:
    return bool(counts["to_helpdesk_lost"] or counts["to_helpdesk_twice"]
                or any(counts[who]["lost"] or counts[who]["twice"] for who in ("sate", "agent")))


def _schedule(rng: random.Random, seconds: float, several: bool) -> list[tuple[float, str]]:
    events = [(rng.uniform(0.05, 0.95) * seconds, "kill") for _ in range(10)]
    if several:  # one freeze of a daemon working customers, for twice the lease
        events.append((0.6 * seconds, "freeze"))
    events += [(seconds * part, "helpdesk") for part in (0.25, 0.5, 0.75)]
    events += [(rng.uniform(0, seconds), "errors") for _ in range(8)]
    return sorted(events)


def _received(sandbox: SandboxHelpdesk) -> Counter:
    return Counter(m["message"] for m in sandbox.received if MARKER.fullmatch(m["message"]))


def _shown(telegram: FakeTelegram) -> Counter:
    """(sate|agent, marker) -> times shown to the customer."""
    return Counter({key: len(times) for key, times in _shown_at(telegram).items()})


def _shown_at(telegram: FakeTelegram) -> dict[tuple[str, str], list[float]]:
    """(sate|agent, marker) -> when each copy reached the Bot API server."""
    shown: dict[tuple[str, str], list[float]] = {}
    for chat_id, chat in telegram.sent.items():
        for message_id, message in chat.items():
            text = message.get("text", "")
            found = MARKER.search(text)
            who = "sate" if "You said" in text else "agent" if AGENT_SAYS in text else None
            if found and who:
                shown.setdefault((who, found.group()), []).append(
                    telegram.stored_at[(chat_id, message_id)])
    return shown


def _answers(sandbox: WatchedSandbox) -> Counter:
    """Every answer the helpdesk gave, and how often: SATE answers each message it got
    (twice if it got it twice), and the agent follows every 4th of SATE's answers."""
    answers = Counter({("sate", m): n for m, n in _received(sandbox).items()})
    answers.update(sandbox.agent_replies)
    return answers


def _settled(sandbox: WatchedSandbox, telegram: FakeTelegram, sent: int) -> bool:
    shown, unheard = _shown(telegram), sandbox.unheard
    return len(_received(sandbox)) >= sent and all(shown[key] >= 1 or key in unheard
                                                   for key in _answers(sandbox))


class Timeline:
    """Moments of the run, told against what was done to it: each SIGKILL, SIGSTOP and
    SIGTERM of a daemon working customers and each helpdesk restart (what a loss or a double is
    explained by, or not)."""

    def __init__(self, started: float, moments: dict[str, list[float]],
                 sandbox: WatchedSandbox) -> None:
        self.started = started
        self.moments = {**moments, "helpdesk restart": sandbox.restarted_at}
        self.sandbox = sandbox

    def moment(self, when: float) -> str:
        nearest = "; ".join(self._nearest(when, moments, name)
                            for name, moments in self.moments.items() if moments)
        return f"{when - self.started:.2f} s ({nearest})"

    def connection(self, sid: str) -> str:
        connected = self.sandbox.connected_at.get(sid)
        if connected is None:
            return f"socket {sid}"
        return f"socket {sid} (connected at {connected - self.started:.2f} s)"

    @staticmethod
    def _nearest(when: float, moments: list[float], name: str) -> str:
        if not moments:
            return f"no {name}"
        nearest = min(moments, key=lambda moment: abs(moment - when))
        side = "after" if nearest >= when else "before"
        return f"nearest {name} {abs(nearest - when):.2f} s {side}"

    def answer(self, key: tuple[str, str]) -> str:
        emitted = self.sandbox.emitted.get(key)
        heard_by = ", ".join(self.connection(sid) for sid in self.sandbox.listeners.get(key, ()))
        return (f"{key[0]} answer to {key[1]}: emitted at "
                + (self.moment(emitted) if emitted is not None else "?")
                + f" into a room with {heard_by or 'no one in it'}")

    def copies(self, what: str, times: list[float]) -> str:
        return f"{what}: copies at " + "; ".join(self.moment(t) for t in sorted(times))


def _count(sandbox: WatchedSandbox, telegram: FakeTelegram, sent: int, customers: int,
           moments: dict[str, list[float]], started: float) -> dict:
    """Counts, and each loss and double named with its timeline ("detail"): the protocol's
    windows apart ("windows"), everything else as lost or twice."""
    received, shown, answers, unheard = (_received(sandbox), _shown(telegram),
                                         _answers(sandbox), sandbox.unheard)
    shown_at = _shown_at(telegram)
    timeline = Timeline(started, moments, sandbox)
    # a daemon working customers killed or frozen: what it held unstored, or sent unrecorded
    killed_at = moments["SIGKILL"] + moments["SIGSTOP"]

    def just_before_a_kill(key: tuple[str, str]) -> bool:
        """Emitted within the second before a SIGKILL: in the bridge's inbox or being
        stored when it died. Server events have no acknowledgement in this API, so the
        helpdesk cannot know to send them again."""
        emitted = sandbox.emitted.get(key)
        return emitted is not None and any(0 <= kill - emitted <= 1.0 for kill in killed_at)

    def again_after_a_kill(times: list[float]) -> bool:
        """A copy before the last reached the far end within the second before a SIGKILL:
        taken, and the bridge killed before it stored that, so it sent it again."""
        return any(0 <= kill - t <= 1.0 for t in sorted(times)[:-1] for kill in killed_at)

    markers = [f"c{n % customers}n{n}x" for n in range(sent)]
    twice = [m for m in markers if received[m] > 1]
    at_kill = [m for m in twice if again_after_a_kill(sandbox.received_at[m])]
    result = {"to_helpdesk_lost": sum(1 for m in markers if received[m] == 0),
              "to_helpdesk_twice": len(twice) - len(at_kill),
              "to_helpdesk_twice_at_kill": len(at_kill),
              "detail": [f"lost: customer message {m}, never reached the helpdesk"
                         for m in markers if received[m] == 0]
              + [f"twice: {timeline.copies(f'customer message {m}', sandbox.received_at[m])}"
                 for m in twice if m not in at_kill],
              "windows": [f"twice, sent at a kill: "
                          f"{timeline.copies(f'customer message {m}', sandbox.received_at[m])}"
                          for m in at_kill]}
    for who in ("sate", "agent"):
        given = {key: n for key, n in answers.items() if key[0] == who}
        never_shown = [key for key in given if shown[key] == 0 and key not in unheard]
        in_flight = [key for key in never_shown if just_before_a_kill(key)]
        lost = [key for key in never_shown if key not in in_flight]
        # When the helpdesk got a message twice it answers twice, in the same second with
        # the same words, which the bridge shows once: only more answers shown than the
        # helpdesk gave count as "twice".
        twice = [key for key, n in given.items() if shown[key] > n]
        twice_at_kill = [key for key in twice if again_after_a_kill(shown_at[key])]
        result[who] = {"answers": len(given), "lost": len(lost), "in_flight": len(in_flight),
                       "unheard": sum(1 for key in given if shown[key] == 0 and key in unheard),
                       "twice": len(twice) - len(twice_at_kill),
                       "twice_at_kill": len(twice_at_kill)}
        result["detail"] += [f"lost: {timeline.answer(key)}" for key in lost]
        result["detail"] += [f"twice: {timeline.answer(key)}; "
                             + timeline.copies("shown", shown_at[key])
                             for key in twice if key not in twice_at_kill]
        result["windows"] += [f"in flight at a kill: {timeline.answer(key)}"
                              for key in in_flight]
        result["windows"] += [f"sent while the bridge was down: {timeline.answer(key)}"
                              for key in given if shown[key] == 0 and key in unheard]
        result["windows"] += [f"twice, sent at a kill: {timeline.answer(key)}; "
                              + timeline.copies("shown", shown_at[key])
                              for key in twice_at_kill]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--db", default="", help="SQLAlchemy URL (default: a temporary SQLite)")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--explain", action="store_true",
                        help="also name each message counted in the protocol's windows")
    parser.add_argument("--daemons", type=int, default=1,
                        help="several daemons on one PostgreSQL (--db), sharing the "
                             "customers; a freeze and a rolling restart are added")
    parser.add_argument("--lease", type=float, default=5, help="[cluster] lease_seconds")
    parser.add_argument("--telegram", choices=("polling", "webhook"), default="polling",
                        help="webhook: each daemon on its own port, behind a round-robin "
                             "balancer")
    args = parser.parse_args()
    if args.daemons > 1 and not args.db.startswith("postgresql"):
        parser.error("several daemons share a PostgreSQL database: give --db")
    if args.db:
        reset(args.db)
    webhook = args.telegram == "webhook"
    result = asyncio.run(chaos(args.messages, args.customers, args.minutes, args.db, args.seed,
                               args.daemons, args.lease, webhook))
    backend = args.db.split(":")[0].split("+")[0] if args.db else "sqlite"
    several = (f"{args.daemons} daemons, {result['freezes']} SIGSTOP of a daemon working "
               f"customers for {2 * args.lease:.0f} s, a rolling restart; ") if args.daemons > 1 else ""
    print(f"chaos: {result['sent']} customer messages + their answers, {args.customers} "
          f"customers, {backend}; {several}{result['kills']} SIGKILLs, "
          f"{result['helpdesk_restarts']} helpdesk restarts, "
          f"{result['errors_injected']} Bot API errors injected; Telegram by "
          + (f"webhook behind a round-robin balancer ({result['passed_on']} requests passed "
             "on to the next daemon); " if webhook else "long polling; ")
          + f"{result['seconds']:.0f} s" + (" (stopped at the time limit)"
                                            if result["timed_out"] else ""))
    print(f"{'':<14} {'count':>7} {'lost':>5} {'twice':>6} {'twice, sent at a kill':>22} "
          f"{'sent while bridge down':>23} {'in flight at a kill':>20}")
    print(f"{'to helpdesk':<14} {result['sent']:>7} {result['to_helpdesk_lost']:>5} "
          f"{result['to_helpdesk_twice']:>6} {result['to_helpdesk_twice_at_kill']:>22} "
          f"{'-':>23} {'-':>20}")
    for who, label in (("sate", "SATE answers"), ("agent", "agent answers")):
        row = result[who]
        print(f"{label:<14} {row['answers']:>7} {row['lost']:>5} {row['twice']:>6} "
              f"{row['twice_at_kill']:>22} {row['unheard']:>23} {row['in_flight']:>20}")
    for line in result["detail"]:  # each loss and double, for a post-mortem
        print(line)
    if args.explain:
        for line in result["windows"]:
            print(f"protocol window: {line}")
    if result["takeovers"]:
        print("takeovers (s from a daemon's kill, freeze or stop until the others hold all "
              "its shards): " + ", ".join(f"{t:.2f}" for t in result["takeovers"]))
    if "kept" in result:
        print(f"the bridge's log (and SQLite database) kept in {result['kept']}")
    expected_agent = result["sent"] // AGENT_EVERY
    if result["agent"]["answers"] < expected_agent // 2:  # the bench itself broke
        print(f"chaos: only {result['agent']['answers']} agent answers of ~{expected_agent}: "
              "the run does not count", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
