"""One way to get a Ray session, for prep and bench alike: join a cluster by address or start a local one.

A session already open in this process is reused and left open; only a session this helper started is shut
down when the block ends, so a caller inside a notebook or a test that holds Ray keeps it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from plumbing.errors import AnimbenchError

LOCAL_SYSTEM_CONFIG = {"enable_metrics_collection": False}


@contextmanager
def ray_session(workers: int | None = None, address: str | None = None) -> Iterator[bool]:
    """Join `address` or start a local Ray with `workers` CPUs (all cores when None); yield whether this block
    started the session (and so shuts it down on exit)."""
    import ray

    if ray.is_initialized():
        yield False
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls from an offline run
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:  # an existing cluster: its nodes' CPUs / GPUs decide the parallelism
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise AnimbenchError(f"--address {address}: cannot join the Ray cluster ({exc})") from exc
    else:
        temp = os.environ.get("RAY_TMPDIR")  # sockets and spill files off a small or shared /tmp
        if temp:
            os.makedirs(temp, exist_ok=True)
        # metrics feed the dashboard's Prometheus export, which is off: collecting them only costs the raylet
        # and GCS CPU beside the workers (measured: benchmarks/prep_throughput.py reports Ray's cores)
        ray.init(num_cpus=workers or os.cpu_count(), _temp_dir=temp or None,
                 _system_config=LOCAL_SYSTEM_CONFIG, **quiet)
    try:
        yield True
    finally:
        ray.shutdown()
