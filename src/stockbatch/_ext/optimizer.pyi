"""Type stub of the compiled batch optimizer (twin: stockbatch._py.optimizer)."""

from collections.abc import Hashable, Sequence
from typing import Any

from typing_extensions import disjoint_base

__all__ = ["BatchOptimizer", "fit", "fit_all"]

def fit(sizes: Sequence[int], seconds: Sequence[float]) -> tuple[float, float, float]: ...
def fit_all(
    sizes: Sequence[int], seconds: Sequence[float]
) -> list[tuple[float, tuple[float, float, float]]]: ...

@disjoint_base  # a cdef class: its C layout admits no second base
class BatchOptimizer:
    def __init__(
        self,
        *,
        min_size: int = ...,
        max_size: int = ...,
        initial: int | None = ...,
        latency_target: float | None = ...,
        decrease: float = ...,
        window: int = ...,
        forget: int = ...,
    ) -> None: ...
    def configure(
        self,
        op: Hashable,
        *,
        min_size: int | None = ...,
        max_size: int | None = ...,
        initial: int | None = ...,
        latency_target: float | None = ...,
    ) -> None: ...
    def record(
        self, op: Hashable, batch_size: int, seconds: float, ok: bool, rate_limited: bool = ...
    ) -> None: ...
    def recommend(self, op: Hashable) -> int: ...
    def explain(self, op: Hashable) -> str: ...
    def stats(self, op: Hashable) -> dict[str, Any]: ...
    def ops(self) -> list[Hashable]: ...
