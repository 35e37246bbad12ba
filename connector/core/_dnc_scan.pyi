"""Types of the C twins in ``_dnc_scan.pyx`` (see its docstring)."""

from array import array
from collections.abc import Callable, Sequence
from typing import Any

def scan(decoder: Any, records: list[Any], now_ms: int, out: Any, table_op: Callable[..., Any],
         dead_letter: Callable[..., Any]) -> Any: ...
def split_sorted(numbers: Sequence[int]) -> dict[int, array[int]]: ...
