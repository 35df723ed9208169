"""One background thread per part running landing work in order, while the next pages are fetched.

Only work that releases the GIL belongs here (zlib's deflate, hashing, a block upload): a stage
that runs Python beside the fetching thread slows it (bench/RESULTS.md, issue 14). Calls are
handed over a batch at a time, not a page at a time, so the fetching thread wakes the stage a
few times a part. At most `depth` calls wait, so memory stays at `depth` batches whatever the
part's size. The first failure is raised, as the stage raised it, by the next `submit` or by
`drain`; calls after it are skipped, so nothing lands past a failed step.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Stage:
    """`submit(fn, *args)` runs `fn(*args)` on the stage's thread, in order; `drain` waits for all."""

    def __init__(self, name: str, depth: int = 2) -> None:
        self._name = name
        self._depth = depth
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._failure: BaseException | None = None

    @property
    def started(self) -> bool:
        """Whether a call was submitted since the last drain or close (so the thread is up)."""
        return self._executor is not None

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue a call; waits only while `depth` calls are already queued."""
        while self._pending and (self._pending[0].done() or len(self._pending) >= self._depth):
            self._pending.popleft().result()
        if self._executor is None:  # started on first use
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage {self._name}")
        # In the caller's context: log lines and spans of the stage's work keep the run's fields.
        context = contextvars.copy_context()
        self._pending.append(self._executor.submit(context.run, self._run, fn, *args))

    def drain(self) -> None:
        """Wait for every call queued; raise the first failure; stop the thread."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread, skipping calls not yet started (a part abandoned); idempotent."""
        if self._executor is not None:
            if self._pending:  # calls still queued: the one the worker may already hold is skipped too
                self._failure = self._failure or _Abandoned()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pending.clear()

    def _run(self, fn: Callable[..., None], *args: Any) -> None:
        if self._failure is not None:
            return
        try:
            fn(*args)
        except BaseException as exc:
            self._failure = exc
            raise


class _Abandoned(Exception):
    """Set by `close`: a call still queued is skipped, not run."""
