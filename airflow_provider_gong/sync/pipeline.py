"""
Pipeline: the ledger's round trips overlap the Gong calls instead of standing in line with them.

A warehouse answers a statement in 50-500 ms; Gong allows a call every 333 ms. Writing each row's
claim and outcome in line with its call (2 statements and 2 commits per row) caps a batch at a
fraction of Gong's pace. So rows are claimed in **windows** of ``claim_window`` rows, one statement
per window, a window ahead of the calls; outcomes are kept in order and written a window behind, one
statement per window. Both run on the ledger's own thread (:class:`ResultsLedger`), while this
thread calls Gong.

What does not change: a row is sent only after its claim is committed and won; an outcome is logged
before it is written; nothing re-sends a pending row. What it costs: a worker killed without warning
(SIGKILL, OOM, a lost machine) can leave up to three windows of rows ``pending`` (claimed, or sent
with the answer not yet written) instead of one row; a run that stops on an error or SIGTERM writes
every outcome it has and hands back the claims it did not use, so at most the row whose call was cut
stays pending. ``claim_window=1`` comes closest to one row at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_gong.exceptions import GongLeaseLostError, GongLedgerError
from airflow_provider_gong.sync.connection import LedgerWriteError
from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.records import ClaimRequest, LedgerEntry

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the smallest automatic window: fewer rows would cost more than one statement per row
MIN_AUTO_WINDOW = 3
MAX_CLAIM_WINDOW = 100
#: auto windows cover this many times the ledger's measured time per window, at the Gong pace
HEADROOM = 2.0


@dataclass
class _Outcome:
    key: str
    values: dict[str, Any]
    meaning: str  # what to set the row to by hand if the write never lands


@dataclass
class _Window:
    requests: list[ClaimRequest]
    future: Future[dict[str, bool]]
    started: bool = False  # a row of it was taken: the next window may be claimed


class LedgerPipeline:
    """
    Claims ahead, outcomes behind, for one batch run over one ledger.

    :param window: rows per claim window; None sizes windows from the ledger's measured write time
        and ``rate`` (Gong calls per second): enough rows that a window's calls outlast the next
        window's writes twice over, at least :data:`MIN_AUTO_WINDOW`.
    """

    def __init__(self, ledger: ResultsLedger, window: int | None = None, *, rate: float = 3.0) -> None:
        if window is not None and not 1 <= window <= MAX_CLAIM_WINDOW:
            raise ValueError(f"claim_window must be between 1 and {MAX_CLAIM_WINDOW}, got {window!r}")
        self.ledger = ledger
        self.window = window
        self.rate = rate
        self._ahead: deque[ClaimRequest] = deque()  # expected, not yet claimed, in order
        self._slots: dict[tuple[str, str], tuple[ClaimRequest, _Window | None]] = {}
        self._outcomes: dict[str, _Outcome] = {}  # not yet handed to the ledger
        self._flushes: deque[tuple[Future[set[str]], list[_Outcome]]] = deque()
        self._seconds = {"claim": 0.0, "write": 0.0}  # the ledger's latest time per step
        self._adopted: _Window | None = None  # a first window claimed with the lease (see adopt)
        #: windows claimed so far and their sizes, for logs and benchmarks
        self.window_sizes: list[int] = []

    def size(self) -> int:
        """Rows in the next window."""
        if self.window is not None:
            return self.window
        busy = self._seconds["claim"] + self._seconds["write"]
        return max(MIN_AUTO_WINDOW, min(MAX_CLAIM_WINDOW, math.ceil(HEADROOM * busy * self.rate)))

    # -- claims -----------------------------------------------------------------------------------

    def prime(self, round_trip: float) -> None:
        """
        Size the first windows from a first measure of the warehouse's round trip (the start-up's reads).

        A claim and an outcome write are a statement and a commit each; without this, the first windows
        are the smallest and the calls wait for the next claims while the warehouse is slow.
        """
        if not any(self._seconds.values()):
            self._seconds = {"claim": 2 * round_trip, "write": 2 * round_trip}

    def adopt(self, requests: list[ClaimRequest], claimed: Future[dict[str, bool]]) -> None:
        """Take claims already asked for (with the lease: :meth:`ResultsLedger.take`) as the first window."""
        if requests:
            window = self._adopted = _Window(list(requests), claimed)
            for request in requests:
                self._slots[(request.key, request.action)] = (request, window)
            self.window_sizes.append(len(requests))

    def expect(self, requests: list[ClaimRequest]) -> None:
        """Queue the claims the coming rows will ask for, in order: the first window is claimed now."""
        for request in requests:
            slot = self._slots.get((request.key, request.action))
            if slot is not None and slot[1] is not None:
                continue  # in a window already claimed (adopted): a row that differs is claimed on its own
            self._ahead.append(request)
            self._slots[(request.key, request.action)] = (request, None)
        if self._adopted is None or self._adopted.started:  # else: the next is claimed when it starts
            self._submit_next()

    def claim(self, key: str, entry: LedgerEntry | None, action: str) -> bool:
        """
        Return True when this run holds ``key`` for ``action``.

        Claimed in its window, or now on its own (a claim nobody expected, e.g. creating a row again
        after a delete).
        """
        self._raise_failed_flushes()
        slot = self._slots.get((key, action))
        if slot is None or slot[0].entry != entry:
            self.flush()
            won = self.ledger.claim(key, entry, action)
            if won:
                try:
                    self.ledger.check_lease()
                except GongLeaseLostError:
                    self.ledger.release([ClaimRequest(key, entry, action)])  # nothing was sent for it
                    raise
            return won
        request, window = slot
        while window is None:  # rows before it went another way: claim up to it now
            self._submit_window()
            request, window = self._slots[(key, action)]
        if not window.started:
            window.started = True
            self._submit_next()  # the window after this one is claimed while this one is sent
        won = window.future.result()[request.key]
        self._raise_failed_flushes()  # writes queued before this claim have ended by now (else: released)
        if not won and window is self._adopted:
            # claimed before the entries were read: a key lost there is asked again on its own, which
            # tells a key the ledger holds under another spelling (a collation) from another run's claim
            del self._slots[(key, action)]
            return self.claim(key, entry, action)
        if won:  # the fencing check before the call: still this run's lease? (else the claim is handed back)
            self.ledger.check_lease()
        del self._slots[(key, action)]
        return won

    def _submit_next(self) -> None:
        """Queue the kept outcomes, then claims for the next window."""
        self._submit_outcomes()
        if self._ahead:
            self._submit_window()

    def _submit_window(self) -> None:
        size = self.size()
        requests = [self._ahead.popleft() for _ in range(min(size, len(self._ahead)))]
        window = _Window(requests, self.ledger.submit(self._timed, "claim", self.ledger.claim_many, requests))
        for request in requests:
            self._slots[(request.key, request.action)] = (request, window)
        self.window_sizes.append(len(requests))

    def _timed(self, step: str, fn: Callable[[Any], T], arg: Any) -> T:
        """Run a ledger step (on the ledger's thread) and keep how long it took, for auto windows."""
        started = time.monotonic()
        try:
            return fn(arg)
        finally:
            self._seconds[step] = time.monotonic() - started

    # -- outcomes ---------------------------------------------------------------------------------

    def record(self, key: str, values: dict[str, Any], meaning: str) -> None:
        """Keep an outcome for the next write (the caller has logged it already)."""
        earlier = self._outcomes.get(key)
        if earlier is not None:  # a second outcome for a row in one window: the later one wins
            values = {**earlier.values, **values}
        self._outcomes[key] = _Outcome(key, values, meaning)

    def _submit_outcomes(self) -> None:
        if not self._outcomes:
            return
        outcomes = list(self._outcomes.values())
        self._outcomes.clear()
        pairs = [(o.key, o.values) for o in outcomes]
        future = self.ledger.submit(self._timed, "write", self.ledger.record_many, pairs)
        self._flushes.append((future, outcomes))

    def flush(self) -> None:
        """Write every outcome kept so far and wait for it: before reading the ledger, at a page's end."""
        self._submit_outcomes()
        while self._flushes:
            self._settle(*self._flushes.popleft())

    def get(self, key: str) -> LedgerEntry | None:
        """Return the row as the ledger has it, with this run's outcomes written first."""
        self.flush()
        return self.ledger.get(key)

    def _raise_failed_flushes(self) -> None:
        """Stop before the next call when an earlier write has failed (checked without waiting)."""
        while self._flushes and self._flushes[0][0].done():
            self._settle(*self._flushes.popleft())

    def _settle(self, future: Future[set[str]], outcomes: list[_Outcome]) -> None:
        try:
            refused = future.result()
        except LedgerWriteError as exc:
            # Stop, naming every outcome not on record: this write's and any later one that fails too.
            lost = list(outcomes)
            self._submit_outcomes()
            while self._flushes:
                later, more = self._flushes.popleft()
                try:
                    self._warn_refused(later.result(), more)
                except LedgerWriteError:
                    lost += more
            raise _unrecorded(self.ledger.table_name, lost, exc) from exc
        self._warn_refused(refused, outcomes)

    def _warn_refused(self, refused: set[str], outcomes: list[_Outcome]) -> None:
        for key in sorted(refused):
            log.warning(
                "Row %s: the ledger row was changed by someone else while this run acted on it; it was "
                "not overwritten (this run's outcome: %s). Check the row.",
                key,
                next(o.meaning for o in outcomes if o.key == key),
            )

    # -- the end ----------------------------------------------------------------------------------

    def finish(self, *, meanwhile: Callable[[], None] | None = None) -> None:
        """
        Write every outcome, then hand back claims this run won but did not use.

        ``meanwhile`` runs while the last outcomes are on their way (the run's last step: letting the
        lease go, on another connection).
        """
        self._submit_outcomes()
        if meanwhile is not None:
            meanwhile()
        self.flush()
        self._release_leftovers()

    def abandon(self) -> None:
        """Save what can be saved when the run is stopping on an error; never mask the error."""
        try:
            self.finish()
        except GongLedgerError as exc:
            log.error("%s", exc)
        except Exception as exc:  # the ledger itself is failing; the rows stay pending, safely
            log.error("Could not write the last outcomes or release unused claims: %s", exc)

    def _release_leftovers(self) -> None:
        unused = list(self._slots.values())
        self._slots.clear()
        self._ahead.clear()
        release = []
        for request, window in unused:
            if window is None:
                continue  # never claimed
            try:
                won = window.future.result().get(request.key, False)
            except LedgerWriteError:
                won = True  # it may have landed; release only touches rows still pending as ours
            except GongLeaseLostError:
                won = False  # refused by the fencing check: rolled back, nothing claimed
            if won:
                release.append(request)
        if release:
            self.ledger.release(release)
            log.info(
                "Handed back %d claimed row(s) this run did not send: %s",
                len(release),
                ", ".join(r.key for r in release[:20]) + (", ..." if len(release) > 20 else ""),
            )


def _unrecorded(table: str, outcomes: list[_Outcome], exc: Exception) -> GongLedgerError:
    rows = "; ".join(f"row {o.key}: {o.meaning}" for o in outcomes)
    return GongLedgerError(
        f"Could not record {len(outcomes)} row(s) in ledger {table} ({exc}). They stay 'pending' there; "
        f"set them by hand to: {rows}. The batch stopped so nothing else goes unrecorded.",
        row_key=outcomes[0].key,
    )
