from collections.abc import Callable, Iterable
from typing import Any

MAX_FIELDS: int

class FlatReader:
    def __init__(self, program: Iterable[tuple[str, int, int, int]],
                 read_long: Callable[[bytes, int], tuple[int, int]], required: int | None = None) -> None: ...
    def __call__(self, data: bytes, pos: int) -> tuple[dict[str, Any], int]: ...
