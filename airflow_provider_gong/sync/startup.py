"""
Start-up: a run's first round trips, overlapped, so that its first Gong call waits for about three.

Before its first call a run needs the source's first page (which also shows that the source and its
key column exist), the source's counts (rows, NULL keys, duplicated keys), that page's ledger
entries, the ledger's lease, and its first rows claimed and committed. One after another that was
about 22 round trips: 22 s on a warehouse that takes a second per statement (BigQuery DML). Now
they go on three connections at once:

- the ledger's: the lease taken without reading it first (one UPDATE), then the first window of
  claims INSERTed in the same transaction, one commit for both
  (:meth:`~airflow_provider_gong.sync.ledger.ResultsLedger.take`);
- the source's: the first page, then that page's ledger entries (read here, while the ledger's
  connection is busy), then nothing until the first call;
- a short-lived third one: the counts, in one statement
  (:meth:`~airflow_provider_gong.sync.source.SourceReader.stats`).

The first window is claimed before the entries are known: it holds the page's first rows that
would be created if the ledger had none of them, and the claim (``INSERT ... WHERE NOT EXISTS``)
wins only the keys the ledger really lacks. A row that turns out to be in the ledger is planned from
its entry and, if it is to be sent, claimed on its own: the pipeline's way with any claim that differs
from its forecast. Nothing is written before the source has been read: the lease's UPDATE is rolled
back when it fails. Every claim is still fenced by the lease and committed before its call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future

from airflow_provider_gong.sync.ledger import ResultsLedger
from airflow_provider_gong.sync.plan import CREATE, CREATE_ONLY
from airflow_provider_gong.sync.records import ClaimRequest
from airflow_provider_gong.sync.rows import check_columns
from airflow_provider_gong.sync.run import BatchRun
from airflow_provider_gong.sync.source import SourceReader
from airflow_provider_gong.sync.sql import rollback_quietly


class Startup:
    """
    One run's start-up; build it as soon as the source and the ledger are open.

    :param take_lease: False for a dry run (it reads, takes nothing).
    :param wait: seconds to wait for another live run's lease (then LedgerBusyError).
    """

    def __init__(self, source: SourceReader, ledger: ResultsLedger, *, take_lease: bool, wait: float) -> None:
        self.source = source
        self.ledger = ledger
        self.stats = source.stats()
        self._first: Future[list[ClaimRequest]] = Future()
        self.claimed: Future[dict[str, bool] | None] | None = (
            ledger.submit(ledger.take, self._first, wait) if take_lease else None
        )
        self.requests: list[ClaimRequest] = []

    def total(self) -> int:
        """Rows in the source (from the counts' statement; asked again if it failed)."""
        with contextlib.suppress(Exception):
            self.stats.result()
        return self.source.count()

    def first(self, columns: Mapping[str, str], build: Callable[[int], BatchRun]) -> BatchRun:
        """
        Check the source (its first page) against ``columns``, build the batch, send its first claims.

        ``build`` makes the batch from the source's row count. A source that fails the task here
        leaves the ledger untouched.
        """
        try:
            check_columns(self.source.columns(), columns)
            batch = build(self.total())
            self.claim_first(batch)
        except BaseException as exc:
            self.fail(exc)
            raise
        return batch

    def claim_first(self, batch: BatchRun) -> None:
        """Send the first window's claims to the ledger's connection; read the page's entries meanwhile."""
        page = self.source.first_page
        blind = batch.mode == CREATE_ONLY  # only a create run claims its first window unseen
        keys, ahead = batch.first_page(*page, claims=blind) if page is not None else ([], [])
        batch.pipe.prime(self.source.first_read_seconds)
        stats = self.stats.result() if self.stats.done() and not self.stats.exception() else None
        if blind and stats is not None and not stats[2]:  # no duplicated key anywhere
            new = [r for r in ahead if r.entry is None and r.action == CREATE]
            self.requests = new[: batch.pipe.size()]
        self._first.set_result(self.requests)
        if not self.ledger.lookup_on(self.source.conn, keys):  # it ends the first page's read; or:
            rollback_quietly(self.source.conn)

    def fail(self, exc: BaseException) -> None:
        """Tell the ledger's side the source failed the task before the claims: it writes nothing."""
        if not self._first.done():
            self._first.set_exception(exc)

    def lease(self, batch: BatchRun) -> None:
        """
        Wait for the lease and the first claims, and hand them to the batch's pipeline.

        LedgerBusyError when another live run keeps the ledger.
        """
        if self.claimed is None:
            return
        if self.claimed.result() is None:  # the usual way (it may have waited): entries are read again
            self.ledger.unprime()
        else:
            batch.pipe.adopt(self.requests, self.claimed)  # type: ignore[arg-type]  # None ruled out above
