"""The plainest aiosmtpd server: a handler that appends each message's bytes to a list.

`bench send` checks the test relay against it: a bare smtplib loop into each, in the
same run. If the test relay were much slower than this, it would cap every figure
measured against it. Prints `READY port`; on SIGTERM, `COUNT {json}` like the relay.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.first_at: float | None = None
        self.last_at: float | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append(envelope.content)
        self.last_at = time.time()
        if self.first_at is None:
            self.first_at = self.last_at
        return "250 OK"


async def main() -> None:
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    report = {
        "accepted": len(handler.received),
        "first_at": handler.first_at,
        "last_at": handler.last_at,
    }
    print("COUNT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
