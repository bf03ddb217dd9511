"""The chunk stages of one job, in the job's thread: answers from the fetch stage's inbox in
chunks → normalize → validate → store → indicators.

A chunk is stored when it reaches ``chunk_rows`` rows; when the inbox is empty and it holds
``min_chunk_rows``; when its oldest answer has waited ``flush_seconds``; and at the end.
Each chunk is one transaction with its quarantined rows (retried; the last try bisects so
that only the rows the database refuses are quarantined). Outcomes per symbol are the
database's truth: committed rows, quarantined rows, refused rows.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import _kernels as kernels
from .._arrow import array, fill_null, to_numpy
from .._errors import JobCancelled, JobTimeout, SchemaError, SinkError
from ..sinks import IngestResult, Sink
from ..sinks._batches import key_codes, key_runs
from ..sinks._meta import meta_from_batch
from ..sources._base import OUT_OF_WINDOW_KEY
from ._fetch import DONE, FetchStage
from ._job import PipelineJob
from ._result import JobResult, Progress, StageStats, SymbolOutcome

__all__ = ["ChunkStages"]

_KEY_COLS = ("symbol", "interval", "ts")
_RELEASE_EVERY = 64  # answers taken before their slots are given back in one call


class ChunkStages:
    """Consume one job's answers; see the module docstring."""

    def __init__(
        self,
        job: PipelineJob,
        result: JobResult,
        sink: Sink | None,
        fetch: FetchStage,
        *,
        chunk_rows: int,
        min_chunk_rows: int,
        flush_seconds: float,
        store_attempts: int,
    ) -> None:
        self.job, self.result, self.sink, self.fetch = job, result, sink, fetch
        self.chunk_rows, self.min_chunk_rows = chunk_rows, min_chunk_rows
        self.flush_seconds, self.store_attempts = flush_seconds, store_attempts
        self.t0 = time.perf_counter()
        self.fetch_end: float | None = None
        self.fetched = self.stored = self.rejected = self.refused = 0
        self.done = self.failed = self.dups = self.attempts = 0
        self.out_of_window = 0  # bars the source dropped outside the asked window
        self.tables: list[pa.Table] = []  # jobs without storage return their rows
        self.meta: dict[str, dict] = {}  # and their provider metadata per symbol
        self.rejected_tables: list[pa.Table] = []
        self.analysis: list[pa.Table] = []

    # -- taking answers ------------------------------------------------------------------
    def prepare(self) -> None:
        """While the first answers are fetched, make the tables the chunks will write (the
        first chunk would otherwise pay for the DDL while the fetch holds the GIL). Best
        effort: what fails here is tried again, and reported, by the first chunk's store."""
        job, sink = self.job, self.sink
        if sink is None or self.fetch.abort_reason is not None:
            return
        try:
            sink.prepare(
                job.table,
                kind=job.kind,
                mode=_store_mode(job.mode),
                aux=("quarantine", "ingest_log") + (("symbols",) if job.kind == "bars" else ()),
            )
        except (SinkError, SchemaError):
            pass

    def consume(self, deadline: float | None) -> None:
        """Take every answer (until DONE), storing chunks as they fill. Slots are given back
        in batches and always before this thread waits: the fetch side never waits on a
        chunk that waits on it, whatever the answer sizes."""
        chunk: list[tuple[str, pa.RecordBatch]] = []
        rows = 0
        since = 0.0  # when the chunk's oldest answer arrived
        taken = 0  # answers taken whose slots are not given back yet
        while True:
            try:
                item = self.fetch.inbox.get_nowait()
            except queue.Empty:
                if taken:
                    self.fetch.release(taken)
                    taken = 0
                waited = time.monotonic() - since
                if chunk and (rows >= self.min_chunk_rows or waited >= self.flush_seconds):
                    self.flush(chunk)
                    chunk, rows = [], 0
                    continue
                item = self._get(deadline, max(0.0, self.flush_seconds - waited) if chunk else None)
                if item is None:  # the chunk's time is up
                    continue
            if item is DONE:
                self.fetch_end = time.perf_counter()
                break
            taken += 1
            if taken >= _RELEASE_EVERY:
                self.fetch.release(taken)
                taken = 0
            if not chunk:
                since = time.monotonic()
            rows += self.accept(item, chunk)
            if rows >= self.chunk_rows:
                self.flush(chunk)
                chunk, rows = [], 0
        if chunk:
            self.flush(chunk)

    def _get(self, deadline: float | None, wait: float | None) -> Any:
        """The next inbox item, waiting at most ``wait`` seconds (None: as long as it takes;
        returns None when the wait is over). Past the job's deadline, abort the fetch stage
        with JobTimeout and keep taking what it still hands over."""
        while True:
            limit = wait
            if deadline is not None and self.fetch.abort_reason is None:
                left = max(0.0, deadline - time.monotonic())
                limit = left if limit is None else min(limit, left)
            try:
                if limit is None:
                    return self.fetch.inbox.get()
                return self.fetch.inbox.get(timeout=limit)
            except queue.Empty:
                if (
                    deadline is not None
                    and self.fetch.abort_reason is None
                    and time.monotonic() >= deadline
                ):
                    self.fetch.abort(
                        JobTimeout(f"job {self.job.job_id} timed out after {self.job.timeout:g} s")
                    )
                    continue
                return None

    def accept(self, item: tuple[str, Any], chunk: list) -> int:
        """Record one symbol's answer; add its bars to the chunk. Returns rows added."""
        symbol, value = item
        outcome = self.result.symbols.setdefault(symbol, SymbolOutcome(symbol))
        if isinstance(value, BaseException):
            outcome.status = "cancelled" if isinstance(value, JobCancelled) else "failed"
            outcome.error = f"{type(value).__name__}: {value}"
            outcome.exception = value
            self.failed += 1
            self.done += 1
            self.progress("fetch")
            return 0
        n = value.num_rows
        meta = value.schema.metadata
        if meta and OUT_OF_WINDOW_KEY in meta:
            self.out_of_window += int(meta[OUT_OF_WINDOW_KEY])
        self.fetched += n
        self.result.stages["fetch"].rows_out += n
        if n:
            chunk.append((symbol, value))
        else:
            outcome.status = "empty"
            self.done += 1
        self.progress("fetch")
        return n

    def flush(self, chunk: list[tuple[str, pa.RecordBatch]]) -> None:
        """Store a chunk, or, once the job is cancelled, report its symbols not stored."""
        if isinstance(self.fetch.abort_reason, JobCancelled):
            for symbol, _ in chunk:
                o = self.result.symbols[symbol]
                o.status, o.error = "cancelled", "cancelled before it was stored"
                self.done += 1
                self.failed += 1
        else:
            self.process(chunk)
        self.progress("store")

    # -- the stages ----------------------------------------------------------------------
    def process(self, chunk: list[tuple[str, pa.RecordBatch]]) -> None:
        job, stages = self.job, self.result.stages
        t = time.perf_counter()
        # the provider's metadata per symbol (exchange zone, currency, dividends, splits)
        meta = {sym: m for sym, b in chunk if (m := meta_from_batch(b))}
        # in symbol order (answers arrive in completion order): each answer is sorted by
        # time, so the chunk is sorted already and normalizing finds nothing to sort
        chunk = sorted(chunk, key=lambda item: item[0])
        # one copy into one chunk here, so that no later stage combines it again
        table = pa.Table.from_batches(
            [b.replace_schema_metadata(None) for _, b in chunk]
        ).combine_chunks()
        rows_in = table.num_rows
        clashes = None
        if job.kind == "bars":
            norm = kernels.normalize(table)
            if norm.duplicates_dropped:
                clashes = clashing_duplicates(table)
            table, self.dups = norm.table, self.dups + norm.duplicates_dropped
        _add(stages["transform"], rows_in, table.num_rows, 0, time.perf_counter() - t)

        t = time.perf_counter()
        rows_in = table.num_rows
        rejected = None
        if job.kind == "bars" and job.validate:
            report = kernels.validate(table, spike_threshold=job.spike_threshold)
            if report.n_rejected:
                table, rejected = report.valid, report.rejected
        if clashes is not None and clashes.num_rows:
            # the kept bar is the provider's last word; the others are not lost silently
            rejected = (
                clashes
                if rejected is None
                else pa.concat_tables([rejected, clashes], promote_options="permissive")
            )
        n_rej = 0 if rejected is None else rejected.num_rows
        _add(stages["validate"], rows_in, table.num_rows, n_rej, time.perf_counter() - t)

        t = time.perf_counter()
        # indicators asked for are computed before the store, to be stored with the bars
        wide = (
            self.indicators(table)
            if job.indicators and table.num_rows and self.sink is not None
            else None
        )
        error, stored = self.store(table, rejected, meta, wide)
        refused = stored.rejected if stored is not None else 0
        by_symbol = stored.refused_by_symbol if stored is not None else {}
        kept_by = stored.kept_by_symbol if stored is not None else {}
        _add(
            stages["store"],
            table.num_rows + n_rej,
            0 if error else table.num_rows - refused,
            n_rej + refused,
            time.perf_counter() - t,
        )
        valid_counts, rej_counts = _counts(table), _counts(rejected)
        blank_counts = _counts(_blank(rejected))
        for s, _ in chunk:
            o = self.result.symbols[s]
            self.done += 1
            if error is not None:
                o.status, o.exception = "failed", error
                o.error = f"{type(error).__name__}: {error}"
                self.failed += 1
                continue
            # the database's truth: rows it refused are quarantined, not stored
            o.refused = by_symbol.get(s, 0)
            o.kept = kept_by.get(s, 0)
            o.rows = valid_counts.get(s, 0) - o.refused - o.kept
            o.quarantined = rej_counts.get(s, 0) + o.refused
            o.status = "refused" if o.refused and not o.rows else "stored"
            if o.refused:
                assert stored is not None
                o.error = (
                    f"the database refused {o.refused} of its rows: "
                    f"{stored.refused_errors.get(s, '')}"
                )
                self.failed += o.status == "refused"
            elif not o.rows and not o.kept and o.quarantined == blank_counts.get(s, 0):
                # only bars without a price (Yahoo's for a day not traded yet): no bars
                o.status = "empty"
            elif not o.rows and not o.kept and o.quarantined:
                # bars came, none usable: not "stored", and the job did not succeed
                o.status = "rejected"
                o.error = (
                    f"validation rejected all {o.quarantined} of its rows "
                    "(they are in the quarantine table with their reasons)"
                )
                self.failed += 1
        if error is None:
            self.refused += refused
            self.stored += table.num_rows - refused - sum(kept_by.values())
            self.rejected += n_rej + refused
            if not job.store_data:  # nothing is stored: the rows travel in the result
                self.tables.append(table)
                self.meta.update(meta)
                if rejected is not None:
                    self.rejected_tables.append(rejected)
            if wide is not None:
                self.analysis.append(wide)
                if stored is not None:
                    st = self.result.stats
                    st["indicator_values_stored"] = (
                        st.get("indicator_values_stored", 0)
                        + stored.indicators_written
                        + stored.indicators_updated
                        + stored.indicators_ignored
                    )
            elif job.indicators and table.num_rows:
                self.analyze(table)

    def store(
        self,
        table: pa.Table,
        rejected: pa.Table | None,
        meta: dict | None = None,
        indicators: pa.Table | None = None,
    ) -> tuple[SinkError | SchemaError | None, IngestResult | None]:
        """Write a chunk and its rejected rows in one transaction; retry, and on the last
        try bisect so that only the rows the database refuses are quarantined (with its
        error). Returns the error when the chunk could not be stored, else what the sink
        did (None for a job without storage)."""
        job, sink = self.job, self.sink
        if sink is None:
            return None, None
        mode = _store_mode(job.mode)
        quarantine = rejected if rejected is not None and rejected.num_rows else None
        error = None
        for attempt in range(1, self.store_attempts + 1):
            self.attempts += 1
            split = attempt == self.store_attempts and attempt > 1
            try:
                return None, sink.ingest(
                    table,
                    table=job.table,
                    kind=job.kind,
                    mode=mode,
                    on_error="split" if split else "raise",
                    job_id=job.job_id,
                    source=job.source.name,
                    quarantine=quarantine,
                    meta=meta if job.kind == "bars" else None,
                    indicators=indicators,
                )
            except SchemaError as exc:  # the table does not take these rows: no retry
                return _as_asked(exc, mode, job.mode), None
            except SinkError as exc:
                error = _as_asked(exc, mode, job.mode)
                if mode == "create":  # a second try would find the table it made
                    break
        return error, None

    def analyze(self, table: pa.Table) -> None:
        self.analysis.append(self.indicators(table))

    def indicators(self, table: pa.Table) -> pa.Table:
        """The job's indicators of ``table``: the bar key and one column per indicator."""
        from ..indicators import compute

        t = time.perf_counter()
        out = compute(table, list(self.job.indicators))
        keep = list(_KEY_COLS) + out.schema.names[table.num_columns :]
        _add(
            self.result.stages["analyze"],
            table.num_rows,
            table.num_rows,
            0,
            time.perf_counter() - t,
        )
        return out.select(keep)

    def progress(self, stage: str) -> None:
        cb = self.job.on_progress
        if cb is None:
            return
        cb(
            Progress(
                job_id=self.job.job_id,
                symbols_total=len(self.job.symbols),
                symbols_done=self.done,
                symbols_failed=self.failed,
                rows_fetched=self.fetched,
                rows_stored=self.stored,
                rows_rejected=self.rejected,
                stage=stage,
                elapsed_s=time.perf_counter() - self.t0,
            )
        )


def _as_asked(exc: Any, mode: str, asked: str) -> Any:
    """``exc`` naming the job's mode (a job's ``append`` stores with the sink's
    ``create_append``: the user asked for the first)."""
    if mode != asked and exc.args and isinstance(exc.args[0], str):
        exc.args = (exc.args[0].replace(f"({mode})", f"({asked})"), *exc.args[1:])
        if getattr(exc, "mode", None) == mode:
            exc.mode = asked
    return exc


def _store_mode(mode: str) -> str:
    """The sink mode a job's ``mode`` stores its chunks with (a job appends into a table it
    creates if missing)."""
    return "create_append" if mode == "append" else mode


def _add(st: StageStats, rows_in: int, rows_out: int, rejected: int, seconds: float) -> None:
    st.rows_in += rows_in
    st.rows_out += rows_out
    st.rejected += rejected
    st.seconds += seconds


def _blank(rejected: pa.Table | None) -> pa.Table | None:
    """The rejected bars without any price (open, high, low and close null)."""
    if rejected is None or rejected.num_rows == 0:
        return None
    mask = pc.is_null(rejected["open"])
    for name in ("high", "low", "close"):
        mask = pc.and_(mask, pc.is_null(rejected[name]))
    return rejected.filter(mask)


def _counts(table: pa.Table | None) -> dict[str, int]:
    if table is None or table.num_rows == 0:
        return {}
    vc = pc.value_counts(table.column("symbol").combine_chunks())
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))


def clashing_duplicates(table: pa.Table) -> pa.Table | None:
    """The bars normalizing drops for a key given again later with other values (the last
    one is kept), as quarantine rows with reason ``DUPLICATE_TS``; None when every repeat
    is identical (then nothing is lost)."""
    batch = table.combine_chunks().to_batches()[0]
    order, same_next = key_runs(key_codes(batch, _KEY_COLS))
    # a run of equal keys clashes when some value column differs inside it
    differs = np.zeros(len(same_next), bool)
    for name in ("open", "high", "low", "close", "adj_close", "volume"):
        col = batch.column(name)
        valid = to_numpy(col.is_valid())[order]
        vals = to_numpy(fill_null(col, 0))[order]
        differs |= (valid[:-1] != valid[1:]) | (valid[:-1] & (vals[:-1] != vals[1:]))
    run = np.concatenate(([0], np.cumsum(~same_next)))  # run id of each sorted row
    clash_runs = np.unique(run[1:][same_next & differs])
    # in key order the last row of a run is the one kept: the others of clashing runs go
    dropped = order[np.isin(run, clash_runs) & np.append(same_next, False)]
    if not len(dropped):
        return None
    rows = table.take(array(np.sort(dropped)))
    return rows.append_column("reasons", array(["DUPLICATE_TS"] * rows.num_rows, pa.string()))
