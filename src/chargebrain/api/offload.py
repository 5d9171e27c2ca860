"""One worker thread for the part of a request that would hold up the event loop.

Compiling formulas (10–30 ms for one of 4 KiB), reading a meter definition (up to half a
second for the largest) and decoding a large JSON body take long enough to stop the
control cycle and every other request while they run on the event loop. They run here
instead, in one thread: concurrent large requests queue rather than add threads, and
pure-Python work hands the interpreter lock back to the event loop every few milliseconds
(`sys.getswitchinterval()`, 5 ms by default).

A handler does in the worker only what depends on the request alone (compiling its
formulas, parsing a definition, decoding a body) and then checks and changes the state on
the event loop in one synchronous step, as before: a refused request changes nothing, and
two requests never interleave their changes. `prepare_request_formulas` is that first
step for formulas: the handler then runs inside `prepared(...)`, where every
`compile_formula` of those texts is a look-up.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from chargebrain.api.errors import ApiError
from chargebrain.core.formula import MAX_TOTAL_LENGTH, prepare_formulas
from chargebrain.core.formula.cache import Prepared

P = ParamSpec("P")
T = TypeVar("T")


class Worker:
    """The worker thread; `run` awaits a function called in it."""

    THREAD_NAME = "chargebrain-worker"

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.THREAD_NAME)
        self.jobs = 0  # handed to the thread so far

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        self.jobs += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop taking work; a job already running finishes in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _prepare(collect: Callable[[], Iterable[str]]) -> Prepared:
    texts = list(collect())
    total = sum(len(t) for t in texts)
    if total > MAX_TOTAL_LENGTH:
        raise ApiError(400, f"formulas too long in total ({total} characters in one request, "
                       f"at most {MAX_TOTAL_LENGTH})")
    # Handlers compile a text as sent or stripped, depending on the field.
    return prepare_formulas([*texts, *(t.strip() for t in texts)])


async def prepare_request_formulas(worker: Worker,
                                   collect: Callable[[], Iterable[str]]) -> Prepared:
    """Compile, in the worker, the formula texts `collect()` finds in a request (it runs
    in the worker too, so it may walk a large body); a request carrying more than
    MAX_TOTAL_LENGTH characters of formulas is an ApiError 400."""
    return await worker.run(_prepare, collect)
