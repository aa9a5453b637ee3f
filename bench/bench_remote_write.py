"""Fleet: delay from a sample on a box to the same sample queryable in the central store.

    .venv/bin/python bench/bench_remote_write.py [--samples 60] [--expr 'up{job="talker"}']

Starts devtools.fleet.LocalFleet (talker, the box's Prometheus rendered with PROMETHEUS_REMOTE_WRITE_* like
compose's config-init does, a central Prometheus with the remote-write receiver behind basic auth) and
times each new sample of `expr`: wall clock when it first appears in a query minus its scrape timestamp,
on the central store and, for comparison, on the box itself. Prints percentiles and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.fleet import LocalFleet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--expr", default='up{job="talker"}', help="one series the box scrapes every second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-remote-write-") as tmp, LocalFleet(Path(tmp)) as fleet:
        fleet.talk("/v1/tts", {"text": "warm up"})
        delays = fleet.sample_delays(args.expr, samples=args.samples, timeout=args.samples * 3 + 60)
    print(delays.report())
    central, box = statistics.median(delays.central), statistics.median(delays.box)
    print(f"median central/box: {central / box:.1f}x ({central - box:.2f}s added by remote write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
