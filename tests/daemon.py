"""Running `helpdesk-bridge` as a real process, for the tests that kill it or read its logs."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


def write_config(path: Path, helpdesk_url: str, api_key: str, database_url: str,
                 level: str = "INFO", fmt: str = "text", user: str = "kim",
                 extra: str = "", port: int = 0, public_url: str = "") -> Path:
    path.write_text(f'''
[helpdesk]
url = "{helpdesk_url}"
api_key = "${{TEST_HELPDESK_KEY}}"
request_timeout = 3

[storage]
url = "{database_url}"

[http]
listen = "127.0.0.1:{port}"
public_url = "{public_url}"

[logging]
level = "{level}"
format = "{fmt}"

[console]
user = "{user}"
{extra}
''')
    os.environ["TEST_HELPDESK_KEY"] = api_key
    return path


class Daemon:
    """`python -m bridge run --config ...` (or other args) with the console adapter on
    stdin/stdout."""

    def __init__(self, config: Path | None, crash_point: str | None = None,
                 args: list[str] | None = None, cwd: Path | None = None) -> None:
        self.args = args or ["run", "--config", str(config)]
        self.crash_point = crash_point
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stderr = b""
        self._log = bytearray()

    async def start(self) -> "Daemon":
        env = dict(os.environ)
        env.pop("BRIDGE_CRASH_POINT", None)
        if self.crash_point:
            env["BRIDGE_CRASH_POINT"] = self.crash_point
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", *self.args, cwd=self.cwd,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        self._stderr_task = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        while chunk := await self.process.stderr.read(4096):
            self._log += chunk

    def log(self) -> bytes:
        """What it has logged so far."""
        return bytes(self._log)

    async def say(self, text: str) -> None:
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, fragment: str, timeout: float = 20) -> str:
        """Read stdout until a line contains fragment."""
        async def read() -> str:
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"bridge output ended before {fragment!r}; "
                                         f"saw {self.lines}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if fragment in line:
                    return line
        try:
            return await asyncio.wait_for(read(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {fragment!r} within {timeout}s; saw {self.lines}") from None

    async def wait(self, timeout: float = 20) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self._stderr_task
        self.stderr = bytes(self._log)
        return code

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def stop(self) -> int:
        """SIGTERM, as systemd would, and collect what it printed."""
        if self.process.returncode is None:
            self.process.terminate()
        code = await self.wait()
        rest = await self.process.stdout.read()
        self.lines += rest.decode().splitlines()
        return code
