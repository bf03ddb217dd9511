"""stockbatch on a Dask cluster: ingestion and kernels beyond one machine.

::

    from distributed import Client
    import stockbatch.dask as sbd

    client = Client("tcp://scheduler:8786")          # or Client(LocalCluster(n_workers=4))
    result = sbd.ingest(symbols, client=client, db="postgresql://…/market", period="1y")
    bars = sbd.read("postgresql://…/market", npartitions=16)  # Dask DataFrame, by symbol
    weekly = sbd.apply(bars, "resample", to="1wk")   # a kernel per partition (map_partitions)

:func:`ingest` takes :func:`stockbatch.ingest`'s options and returns the same
:class:`~stockbatch.JobResult`: the symbols are cut into shards, each shard is one engine job
on a worker (which keeps one engine and one sink per database for its lifetime), stores are
idempotent upserts, so a shard whose worker died simply runs again elsewhere. One provider rate
limit holds for the whole cluster (a token bucket on the scheduler, see
:mod:`stockbatch.dask._limit`). Needs the ``stockbatch[dask]`` extra (``dask`` and
``distributed``).

(This package is ``stockbatch.dask``; inside it ``import dask`` is the real Dask: imports are
absolute.)
"""

from __future__ import annotations

from ._frames import KERNELS, apply, read
from ._ingest import ingest

__all__ = ["ingest", "read", "apply", "KERNELS"]
