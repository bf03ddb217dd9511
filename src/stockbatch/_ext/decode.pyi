"""Type stub of the compiled payload decoders (twin: stockbatch._py.decode)."""

from typing import Any

import pyarrow as pa

__all__ = [
    "decode_yahoo_chart",
    "decode_alphavantage",
    "decode_yahoo_quote",
    "events_from_metadata",
]

_Payload = bytes | bytearray | memoryview | str

def decode_yahoo_chart(
    data: _Payload, *, symbol: str | None = None, interval: str | None = None, source: str = "yahoo"
) -> pa.RecordBatch: ...
def decode_alphavantage(
    data: _Payload,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    source: str = "alphavantage",
) -> pa.RecordBatch: ...
def decode_yahoo_quote(data: _Payload, *, source: str = "yahoo") -> pa.RecordBatch: ...
def events_from_metadata(batch: pa.RecordBatch) -> dict[str, list[list[Any]]]: ...
