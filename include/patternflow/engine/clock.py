"""Time as the detection files show it: ISO-8601 in India Standard Time (+05:30)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")

Clock = Callable[[], datetime]
"""Injected wherever a time is recorded, so that tests can fix it."""


def now_ist() -> datetime:
    return datetime.now(IST)


def iso_ist(moment: datetime) -> str:
    """``2026-11-22T07:21:31.123+05:30``; a naive time is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(IST).isoformat(timespec="milliseconds")


def iso_ist_epoch(epoch: float) -> str:
    """``iso_ist`` of a time given in seconds since the epoch."""
    return iso_ist(datetime.fromtimestamp(epoch, UTC))
