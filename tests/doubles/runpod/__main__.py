"""The RunPod double as its own process, for tests that kill it (or the masters) with
SIGKILL:

    python -m tests.doubles.runpod --port P --state-file F.sqlite3 [--endpoint-id ID]
        [--api-key K] [--workers N --service-s S --output-json FILE] [--webhook-ok]

With a state file it survives `kill -9` and a restart on the same port and file (see
`store` for the table a test may read). `--workers/--service-s/--output-json` run the
simulated pool (every job answers the output JSON); without them real runpod worker
processes poll it (`RunPodDouble.worker_env`). `--webhook-ok` makes it call the jobs'
webhooks when they end (off by default here: masters are killed and restarted, so a
process-mode test polls). It prints "runpod double listening on PORT" once listening and
stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from tests.doubles.runpod.server import RunPodDouble
from tests.doubles.runpod.simulated import SimulatedWorkers


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.doubles.runpod")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--endpoint-id", default="stillhouse-test")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--workers", type=int, default=None, help="simulated GPUs")
    parser.add_argument("--service-s", type=float, default=None, help="seconds per job")
    parser.add_argument("--output-json", type=Path, default=None, help="every job's output")
    parser.add_argument("--webhook-ok", action="store_true", help="call the jobs' webhooks")
    args = parser.parse_args(argv)
    pool = (args.workers, args.service_s, args.output_json)
    if any(v is not None for v in pool) and not all(v is not None for v in pool):
        parser.error("--workers, --service-s and --output-json go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    simulated = None
    if args.workers is not None:
        output = json.loads(args.output_json.read_text())
        simulated = SimulatedWorkers(args.workers, args.service_s, output)
    double = RunPodDouble(
        args.endpoint_id,
        simulated,
        api_key=args.api_key,
        state_file=args.state_file,
        port=args.port,
        webhooks=args.webhook_ok,
    ).start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"runpod double listening on {double.port}", flush=True)
    while not stopping.wait(0.5):  # a timed wait: signal handlers run between waits
        pass
    double.stop()


if __name__ == "__main__":
    main()
