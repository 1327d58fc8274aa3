"""Run by bench_expand in a process of its own: fire and expand what is due, send nothing.

Configured from the environment like `flask --app wsgi mailprefs ...`. Prints one JSON
line: the seconds that firing and expanding took (the interpreter start and the app's
creation are not in it) and the process's peak resident memory, VmHWM from
/proc/self/status: the high-water mark of this program's own memory. (getrusage's
ru_maxrss would not do: it keeps the size of the parent as it was forked, before exec.)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from mailprefs import create_app
from mailprefs.delivery.worker import Worker


def main() -> None:
    app = create_app()
    worker = Worker(app)
    started = time.perf_counter()
    fired = worker.fire_due()
    worker.expand_all()
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    peak_kb = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))
    print(json.dumps({"seconds": seconds, "fired": fired, "peak_kb": peak_kb}), flush=True)


if __name__ == "__main__":
    main()
