"""
Settle a ledger row left ``pending`` ("outcome unknown") through the same lease and claim rules as a run.

A create whose answer was lost, or a run that died mid-call, leaves its row ``pending``; the batch never
sends it again, since Gong may have made the meeting. A person looks the meeting up in Gong by its
``externalId`` and records what they found:

- ``created`` (with the meeting ID): the row becomes what a run records for a created meeting, and
  every later run skips it;
- ``failed``: the row becomes ``failed`` with ``error_kind = 'transient'``, which the next run claims
  and sends again, as after a network error.

The ledger is opened as the batch opens it, its lease taken as a run takes it (waiting up to
``lease_wait_seconds`` for a run at work, then :class:`~airflow_provider_gong.exceptions.GongLedgerBusyError`
naming it), and the row read and checked. The change is one compare-and-set ``UPDATE`` carrying the
lease's fencing check and the row's claim as read (status, claim token, attempt count), so it cannot
race a run, a late outcome write or another settlement; then the lease is let go. Refusals are
:class:`~airflow_provider_gong.exceptions.GongSettleRefusedError`, each saying why.

From a shell where the ``airflow`` CLI works (connections resolve through Airflow)::

    python -m airflow_provider_gong.sync.settle list    --conn-id warehouse [--ledger gong_meeting_ledger]
    python -m airflow_provider_gong.sync.settle created --conn-id warehouse --row-key K --meeting-id ID
    python -m airflow_provider_gong.sync.settle failed  --conn-id warehouse --row-key K
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import socket
import sys
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_gong.exceptions import GongError, GongValidationError
from airflow_provider_gong.sync.claims import claim_token
from airflow_provider_gong.sync.ddl import DEFAULT_LEDGER_TABLE
from airflow_provider_gong.sync.settlement import (
    OUTCOMES,
    LedgerSettler,
    PendingRow,
    Settlement,
    check_outcome,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = [
    "DEFAULT_LEDGER_TABLE",
    "OUTCOMES",
    "LedgerSettler",
    "PendingRow",
    "Settlement",
    "check_outcome",
    "list_pending",
    "report",
    "settle_row",
    "settle_token",
]
log = logging.getLogger("airflow_provider_gong.sync.settle")  # also when run as __main__


def settle_row(
    warehouse: str | DbApiHook,
    row_key: str,
    outcome: str,
    *,
    ledger_table: str = DEFAULT_LEDGER_TABLE,
    meeting_id: str | None = None,
    meeting_url: str | None = None,
    lease_wait_seconds: float = 150.0,
    lease_seconds: float = 120.0,
    claim_lease_seconds: float = 600.0,
    context: Mapping[str, Any] | None = None,
) -> Settlement:
    """
    Settle one ``pending`` row of the batch's ledger as ``created`` or ``failed``.

    :param warehouse: the warehouse connection id (any common-sql connection), or its hook.
    :param outcome: ``created`` (the meeting exists in Gong: give ``meeting_id``, digits, and optionally
        ``meeting_url``) or ``failed`` (it does not: the next run sends the row again).
    :param lease_wait_seconds: how long to wait for a run holding the ledger's lease.
    :param claim_lease_seconds: the batch's ``claim_lease_seconds``: a younger claim with no outcome
        may be another run's call in flight, and is not settled.
    :param context: an Airflow task's context, to name the task in the row's claim token.
    """
    check_outcome(outcome, meeting_id, meeting_url)
    settler = LedgerSettler(
        _hook(warehouse),
        ledger_table,
        owner=settle_token(context),
        lease_seconds=lease_seconds,
        claim_lease_seconds=claim_lease_seconds,
    )
    try:
        settler.open(lease_wait_seconds)
        row = settler.read(row_key)
        settler.check(row)
        return settler.apply(row, outcome, meeting_id=meeting_id, meeting_url=meeting_url)
    finally:
        settler.close()


def list_pending(
    warehouse: str | DbApiHook,
    ledger_table: str = DEFAULT_LEDGER_TABLE,
    *,
    claim_lease_seconds: float = 600.0,
    everything: bool = False,
) -> list[PendingRow]:
    """
    Return the ``pending`` rows that need a person (with ``everything``, every pending row, each noted).

    Reads only: no lease is taken and nothing is made; a ledger that does not exist yet has nothing to
    settle.
    """
    settler = LedgerSettler(
        _hook(warehouse), ledger_table, owner=settle_token(), claim_lease_seconds=claim_lease_seconds
    )
    try:
        rows = settler.pending()
    finally:
        settler.close()
    if rows is None:
        log.info("Ledger %s does not exist (yet): nothing to settle", ledger_table)
        return []
    todo = sum(r.needs_settlement for r in rows)
    log.info("Ledger %s: %d row(s) to settle, %d other pending row(s)", ledger_table, todo, len(rows) - todo)
    return [r for r in rows if everything or r.needs_settlement]


def settle_token(context: Mapping[str, Any] | None = None) -> str:
    """Return the claim token a settlement writes: ``settle:`` and the task, or the person, that settled."""
    if context is not None and context.get("ti") is not None:
        return f"settle:{claim_token(context)}"[:255]
    try:
        who = getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        who = "someone"
    return f"settle:{who[:60]}@{socket.gethostname()[:40]}:{os.getpid()}/{uuid.uuid4().hex[:12]}"


def _hook(warehouse: str | DbApiHook) -> DbApiHook:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    hook = BaseHook.get_hook(warehouse) if isinstance(warehouse, str) else warehouse
    if not isinstance(hook, DbApiHook):
        raise GongValidationError(f"connection {warehouse!r} is not a common-sql (DbApiHook) connection")
    return hook


def report(rows: Sequence[PendingRow], ledger_table: str) -> str:
    """Return the pending rows as a person reads them: those to settle, then those that need nothing."""
    todo = [r for r in rows if r.needs_settlement]
    if not todo:
        lines = [f"Ledger {ledger_table}: nothing to settle."]
    else:
        lines = [
            f"Ledger {ledger_table}: {len(todo)} row(s) to settle. Look each up in Gong by its externalId "
            "(the source's external_id, or the row key), then settle it as created (with its meeting ID) or "
            "failed:"
        ]
        table = [("row_key", "action", "claimed_at", "error_kind", "request_id", "claimed_by")]
        table += [
            (
                r.row_key,
                r.action,
                r.claimed_at or "",
                r.error_kind or "-",
                r.request_id or "-",
                r.claimed_by or "",
            )
            for r in todo
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        lines += [
            "  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
        ]
    others = [r for r in rows if not r.needs_settlement]
    if others:
        lines.append(f"{len(others)} other pending row(s) need nothing now:")
        lines += [f"  {r.row_key}: {r.note}" for r in others]
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_gong.sync.settle list|created|failed``: 0 done, 1 refused, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_gong.sync.settle",
        description="List the batch ledger's pending rows, or settle one as created or failed.",
    )
    parser.add_argument("command", choices=("list", *OUTCOMES))
    parser.add_argument("--conn-id", required=True, help="the warehouse connection of the ledger")
    parser.add_argument("--ledger", default=DEFAULT_LEDGER_TABLE, help="the ledger table (%(default)s)")
    parser.add_argument("--row-key", help="the row to settle")
    parser.add_argument("--meeting-id", help="created: the meeting's ID in Gong")
    parser.add_argument("--meeting-url", help="created: the meeting's URL (optional)")
    parser.add_argument("--wait", type=float, default=150.0, help="seconds to wait for a run (%(default)s)")
    parser.add_argument("--claim-lease-seconds", type=float, default=600.0, help="the batch's (%(default)s)")
    args = parser.parse_args(argv)
    if args.command != "list" and not args.row_key:
        parser.error(f"{args.command} needs --row-key")
    # As `airflow connections get` does: connections kept in Airflow's metadata database count too.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    _log_to_stderr()
    try:
        if args.command == "list":
            rows = list_pending(
                args.conn_id, args.ledger, claim_lease_seconds=args.claim_lease_seconds, everything=True
            )
            print(report(rows, args.ledger))
            return 0
        done = settle_row(
            args.conn_id,
            args.row_key,
            args.command,
            ledger_table=args.ledger,
            meeting_id=args.meeting_id,
            meeting_url=args.meeting_url,
            lease_wait_seconds=args.wait,
            claim_lease_seconds=args.claim_lease_seconds,
        )
    except GongError as exc:
        print(f"Refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a connection that does not exist, a database that does not answer
        print(f"Failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"Settled. {done.line()}")
    return 0


def _log_to_stderr() -> None:
    """Send the provider's log lines to stderr as plain text (the result goes to stdout)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    provider = logging.getLogger("airflow_provider_gong")
    provider.handlers, provider.propagate = [handler], False
    provider.setLevel(logging.INFO)
    for category in (DeprecationWarning, FutureWarning):  # Airflow's own, nothing for this user to act on
        warnings.filterwarnings("ignore", category=category)


if __name__ == "__main__":
    sys.exit(main())
