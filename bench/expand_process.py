"""Run by bench_expand in a process of its own: fire and expand what is due, send nothing.

Configured from the environment like `flask --app wsgi mailprefs ...`. Prints one JSON
line: the seconds that firing and expanding took (the interpreter start and the app's
creation are not in it; the parent measures the process's peak memory as a whole).
"""

from __future__ import annotations

import json
import time

from mailprefs import create_app
from mailprefs.delivery.worker import Worker


def main() -> None:
    app = create_app()
    worker = Worker(app)
    started = time.perf_counter()
    fired = worker.fire_due()
    worker.expand_all()
    print(json.dumps({"seconds": time.perf_counter() - started, "fired": fired}), flush=True)


if __name__ == "__main__":
    main()
