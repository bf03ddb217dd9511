"""Failover across sources in a configured order."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from .._arrow import array
from .._errors import ProviderError, ProviderUnavailable, SymbolNotFound
from ._base import Source

__all__ = ["FailoverSource"]


class FailoverSource(Source):
    """Ask each source in turn until one answers.

    Parameters
    ----------
    sources : list of Source
        In order of preference.
    failover_on : tuple of exception classes
        Errors that pass the request to the next source (default: every ProviderError,
        including SymbolNotFound — another provider may know the symbol).

    When every source fails, the error raised is SymbolNotFound if all said so, else
    ProviderUnavailable naming each source's error (``.errors`` keeps them).
    ``stats.failovers`` counts requests served by a source other than the first.
    """

    def __init__(self, sources: Iterable[Source], *, failover_on: tuple = (ProviderError,)) -> None:
        super().__init__()
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("FailoverSource needs at least one source")
        self.failover_on = failover_on
        self.name = "+".join(s.name for s in self.sources)
        self.max_symbols_per_call = max(s.max_symbols_per_call for s in self.sources)
        self.concurrency = max(s.concurrency for s in self.sources)
        served = [s.intervals for s in self.sources]  # what any member serves
        self.intervals = (
            None
            if None in served
            else tuple(dict.fromkeys(i for member in served for i in member or ()))
        )
        self.served_by: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<FailoverSource {[repr(s) for s in self.sources]}>"

    def normalize_symbol(self, symbol: str) -> str:
        """The symbol as the first source that accepts it spells it (each source still applies
        its own rule when asked); ValueError, naming every source's rule, when none does."""
        reasons = []
        for src in self.sources:
            try:
                return src.normalize_symbol(symbol)
            except ValueError as exc:
                reasons.append(str(exc))
        raise ValueError(
            f"{self.name}: no source can have symbol {symbol!r}: " + "; ".join(reasons)
        )

    async def _each(self, method: str, symbol, *args, sources=None, **kwargs):
        errors: list[ProviderError] = []
        sources = self.sources if sources is None else sources
        for i, src in enumerate(sources):
            try:
                result = await getattr(src, method)(*args, **kwargs)
            except self.failover_on as exc:
                errors.append(exc)
                self.stats.error(exc)
                continue
            if i:
                self.stats.failovers += 1
            self.served_by[src.name] = self.served_by.get(src.name, 0) + 1
            self.stats.bars += result.num_rows
            return result
        detail = "; ".join(f"{s.name}: {e}" for s, e in zip(sources, errors, strict=False))
        cls = (
            SymbolNotFound
            if all(isinstance(e, SymbolNotFound) for e in errors)
            else ProviderUnavailable
        )
        raise cls(
            f"every source failed for {symbol or 'quotes'}: {detail}",
            provider=self.name,
            symbol=symbol,
            errors=errors,
        ) from errors[-1]

    async def fetch_history(self, symbol: str, **options) -> pa.RecordBatch:
        symbol = self.normalize_symbol(symbol)
        usable = []
        for src in self.sources:  # only the sources that can have this symbol
            try:
                src.normalize_symbol(symbol)
            except ValueError:
                continue
            usable.append(src)
        batch = await self._each("fetch_history", symbol, symbol, sources=usable, **options)
        if batch.num_rows and batch.column("symbol")[0].as_py() != symbol:
            # a later source spelt it its own way: keep the one name this source promised
            idx = batch.schema.get_field_index("symbol")
            batch = batch.set_column(
                idx, batch.schema.field(idx), array([symbol] * batch.num_rows, pa.string())
            )
        return batch

    async def fetch_quotes(self, symbols: Iterable[str]) -> pa.RecordBatch:
        symbols = list(symbols)
        # the sources to ask are a local list passed down, never swapped into self.sources:
        # overlapping calls (and fetch_history meanwhile) each see the full configuration
        usable = [s for s in self.sources if s.max_symbols_per_call > 0]
        if not usable:
            raise ProviderError(f"{self.name}: no source serves quotes", provider=self.name)
        return await self._each("fetch_quotes", None, symbols, sources=usable)

    async def aclose(self) -> None:
        for s in self.sources:
            await s.aclose()
