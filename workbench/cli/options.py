"""The command line's one vocabulary: a knob has one flag, unit, default and help in every command.

A command takes a shared knob by annotating its parameter with the alias here and giving the
default beside it, ``max_batch_rows: MaxBatchRows = MAX_BATCH_ROWS``. The server defaults are
the bundle manifest's (:class:`serving.manifest.Batching`, ``Threads``, ``Cache``), so what
``workbench batching`` plans is what ``workbench export`` ships. A renamed option keeps its old
flag for one release as a hidden option (:func:`old_flag`); :func:`renamed` maps it onto the new
one and prints one warning line:

>>> renamed(None, "--max-batch", "--max-batch-rows", 32)
32
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import typer

from serving.manifest import Batching, Cache, Threads

T = TypeVar("T")

MAX_BATCH_ROWS = Batching.max_batch_rows
MAX_DELAY_MS = Batching.max_delay_ms
MAX_QUEUE_ROWS = Batching.max_queue_rows
INSTANCES = Threads.instances
THREADS_PER_INSTANCE = Threads.threads
CACHE_MAX_ENTRIES = Cache.max_entries
CACHE_TTL_S = Cache.ttl_s

MaxBatchRows = Annotated[
    int, typer.Option("--max-batch-rows", help="Most rows (items) in one batch (model run).")
]
MaxDelayMs = Annotated[
    float,
    typer.Option("--max-delay-ms", help="Most ms a batch waits for more requests to fill it."),
]
MaxQueueRows = Annotated[
    int, typer.Option("--max-queue-rows", help="Most rows waiting; beyond it requests are refused.")
]
Instances = Annotated[
    int, typer.Option("--instances", help="Model instances (sessions) serving one queue.")
]
CacheMaxEntries = Annotated[
    int, typer.Option("--cache-max-entries", help="Most cached responses (LRU).")
]
CacheTtlS = Annotated[
    float, typer.Option("--cache-ttl-s", help="Seconds a cached response stays valid.")
]
Db = Annotated[
    str | None,
    typer.Option("--db", help="Run store path (default: WORKBENCH_DB or the user data dir)."),
]


def old_flag(flag: str) -> Any:
    """The old spelling of a renamed option, hidden from ``--help``; read it with
    :func:`renamed`."""
    return typer.Option(None, flag, hidden=True)


def renamed(value: Any, old: str, new: str, current: T) -> T:
    """The value of option ``new`` (``current``), unless its old spelling ``old`` gave ``value``:
    then that, after one warning line on stderr."""
    if value is None:
        return current
    typer.echo(f"warning: {old} is deprecated; use {new}", err=True)
    return value
