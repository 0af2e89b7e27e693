"""IPP event notifications with the ippget pull method (RFC 3995, RFC 3996): subscriptions, their
leases, and the events each keeps until its subscriber fetches them with Get-Notifications.

Pure: time comes from the injected `seconds` callable (the reactor's clock), nothing touches the disk.
Subscriptions live in memory only: a restart of the spooler ends them all (clients see
client-error-not-found on their next Get-Notifications, and notify-printer-up-time tells them the
printer restarted; CUPS's ippget clients then subscribe again). Everything is bounded: at most
MAX_SUBSCRIPTIONS subscriptions at once, at most MAX_EVENTS events kept per subscription (the oldest
go first), each kept at most EVENT_LIFE seconds; a printer subscription's lease is at most MAX_LEASE
seconds, a job subscription ends with its job. Only a subscription's owner or an administrator may
see its events, renew it or cancel it, as for jobs."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from spooler.ipp.tags import Status
from spooler.model import NotAuthorized, SpoolerError

#: RFC 3995 5.3.3.4: the events a subscriber may ask for. A subscription to "job-state-changed" also
#: gets job-created, job-completed and job-stopped; one to "printer-state-changed" also
#: printer-stopped, -restarted and -shutdown (PARENT_EVENTS).
JOB_EVENTS = ("job-completed", "job-config-changed", "job-created", "job-state-changed", "job-stopped")
PRINTER_EVENTS = ("printer-config-changed", "printer-queue-order-changed", "printer-restarted", "printer-shutdown",
                  "printer-state-changed", "printer-stopped")  # fmt: skip
EVENTS = JOB_EVENTS + PRINTER_EVENTS
PARENT_EVENTS = {
    "job-created": "job-state-changed", "job-completed": "job-state-changed", "job-stopped": "job-state-changed",
    "printer-stopped": "printer-state-changed", "printer-restarted": "printer-state-changed",
    "printer-shutdown": "printer-state-changed",
}  # fmt: skip
DEFAULT_EVENTS = ("job-completed",)
MAX_SUBSCRIPTIONS = 100  # at once, every queue and user together (CUPS's MaxSubscriptions)
MAX_EVENTS = 100  # kept per subscription (CUPS's MaxEvents)
EVENT_LIFE = 60  # seconds an event is kept for Get-Notifications (ippget-event-life; RFC 3996: at least 15)
DEFAULT_LEASE = 86400  # seconds (notify-lease-duration-default)
MAX_LEASE = 86400  # seconds; a request for more, or for 0 ("forever"), gets this
GET_INTERVAL = 10  # seconds a client should wait before its next Get-Notifications (notify-get-interval)
MAX_USER_DATA = 63  # octets of notify-user-data (RFC 3995 5.3.1)


class SubscriptionNotFound(SpoolerError):
    def __init__(self, subscription_id: int) -> None:
        super().__init__(f"no subscription {subscription_id}")
        self.subscription_id = subscription_id


class TooManySubscriptions(SpoolerError):
    """MAX_SUBSCRIPTIONS are in use."""


class NotRenewable(SpoolerError):
    """A job subscription lasts as long as its job: it cannot be renewed."""


@dataclass(frozen=True)
class Event:
    """One thing that happened, as a notification tells it: the event keyword, its number in its
    subscription, when, and what the printer and the job were like then (rendered by the IPP layer)."""

    sequence: int
    kind: str
    time: float
    text: str
    job: dict[str, Any] | None = None
    printer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Subscription:
    subscription_id: int
    owner: str
    queue: str
    events: tuple[str, ...]
    created_at: float
    job_id: int | None = None  # a job subscription (Create-Job-Subscriptions, or with a job's creation)
    lease: int = 0  # seconds granted (printer subscriptions); 0 for job subscriptions
    expires_at: float | None = None
    user_data: bytes = b""
    charset: str = "utf-8"
    language: str = "en"
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    sequence: int = 0  # the number of the last event made for it
    kept: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    ended_at: float | None = None  # its job finished: ends once its last events are fetched or too old

    def wants(self, kind: str) -> bool:
        return kind in self.events or PARENT_EVENTS.get(kind) in self.events


class Subscriptions:
    """Every subscription of the printer (all queues), with their kept events."""

    def __init__(self, seconds: Callable[[], float], *, max_subscriptions: int = MAX_SUBSCRIPTIONS,
                 event_life: float = EVENT_LIFE, max_lease: int = MAX_LEASE) -> None:  # fmt: skip
        self._seconds = seconds
        self.max_subscriptions = max_subscriptions
        self.event_life = event_life
        self.max_lease = max_lease
        self._subscriptions: dict[int, Subscription] = {}
        self._next_id = 1

    def __len__(self) -> int:
        self.sweep()
        return len(self._subscriptions)

    # -- lifecycle ---------------------------------------------------------------------------------

    def grant_lease(self, requested: int | None) -> int:
        """The lease a printer subscription gets for the lease it asked for (None: the default)."""
        if requested is None:
            return min(DEFAULT_LEASE, self.max_lease)
        if requested <= 0 or requested > self.max_lease:
            return self.max_lease
        return requested

    def create(self, *, owner: str, queue: str, events: Iterable[str], job_id: int | None = None,
               lease: int | None = None, user_data: bytes = b"", charset: str = "utf-8",
               language: str = "en") -> Subscription:  # fmt: skip
        """A new subscription; raises TooManySubscriptions when MAX_SUBSCRIPTIONS are in use. `events`
        must already be checked against EVENTS."""
        self.sweep()
        if len(self._subscriptions) >= self.max_subscriptions:
            raise TooManySubscriptions(f"the printer has {self.max_subscriptions} subscriptions already")
        now = self._seconds()
        granted = 0 if job_id is not None else self.grant_lease(lease)
        subscription = Subscription(
            subscription_id=self._next_id, owner=owner, queue=queue, events=tuple(dict.fromkeys(events)),
            created_at=now, job_id=job_id, lease=granted, expires_at=None if job_id is not None else now + granted,
            user_data=user_data[:MAX_USER_DATA], charset=charset, language=language,
        )  # fmt: skip
        self._next_id += 1
        self._subscriptions[subscription.subscription_id] = subscription
        return subscription

    def get(self, subscription_id: int) -> Subscription:
        self.sweep()
        found = self._subscriptions.get(subscription_id)
        if found is None:
            raise SubscriptionNotFound(subscription_id)
        return found

    def owned(self, subscription_id: int, requester: str | None, admin: bool) -> Subscription:
        """The subscription, if `requester` may see and change it (its owner, or an administrator)."""
        subscription = self.get(subscription_id)
        if not admin and requester != subscription.owner:
            raise NotAuthorized(f"only the owner of subscription {subscription_id} or an admin may use it")
        return subscription

    def renew(self, subscription_id: int, lease: int | None, *, requester: str | None, admin: bool) -> Subscription:
        subscription = self.owned(subscription_id, requester, admin)
        if subscription.job_id is not None:
            raise NotRenewable(f"subscription {subscription_id} lasts as long as job {subscription.job_id}")
        subscription.lease = self.grant_lease(lease)
        subscription.expires_at = self._seconds() + subscription.lease
        return subscription

    def cancel(self, subscription_id: int, *, requester: str | None, admin: bool) -> None:
        self.owned(subscription_id, requester, admin)
        del self._subscriptions[subscription_id]

    def listing(self, *, queue: str, job_id: int | None = None, owner: str | None = None) -> list[Subscription]:
        """The subscriptions of a queue's printer (of one of its jobs, of one owner), oldest first."""
        self.sweep()
        return [s for s in self._subscriptions.values()
                if s.queue == queue and (job_id is None or s.job_id == job_id)
                and (owner is None or s.owner == owner)]  # fmt: skip

    def sweep(self) -> None:
        """Drop what is over: leases that ran out, events older than the event life, job subscriptions
        whose job ended more than an event life ago."""
        now = self._seconds()
        for subscription_id, subscription in list(self._subscriptions.items()):
            if subscription.expires_at is not None and subscription.expires_at <= now:
                del self._subscriptions[subscription_id]
                continue
            while subscription.kept and subscription.kept[0].time <= now - self.event_life:
                subscription.kept.popleft()
            if subscription.ended_at is not None and subscription.ended_at <= now - self.event_life:
                del self._subscriptions[subscription_id]

    # -- events ------------------------------------------------------------------------------------

    def publish(self, kind: str, *, queue: str, text: str, job: dict[str, Any] | None = None,
                printer: dict[str, Any] | None = None) -> int:  # fmt: skip
        """Record an event for every subscription that wants it: printer subscriptions of the queue,
        and job subscriptions of the job. Returns how many got it."""
        self.sweep()
        now = self._seconds()
        job_id = job.get("job-id") if job is not None else None
        delivered = 0
        for subscription in self._subscriptions.values():
            if subscription.queue != queue or subscription.ended_at is not None or not subscription.wants(kind):
                continue
            if subscription.job_id is not None and subscription.job_id != job_id:
                continue
            subscription.sequence += 1
            subscription.kept.append(Event(subscription.sequence, kind, now, text, job, dict(printer or {})))
            delivered += 1
        return delivered

    def job_ended(self, job_id: int) -> None:
        """The job is finished: its subscriptions end once their last events are fetched."""
        now = self._seconds()
        for subscription in self._subscriptions.values():
            if subscription.job_id == job_id and subscription.ended_at is None:
                subscription.ended_at = now

    def fetch(self, subscription_id: int, *, since: int | None, requester: str | None,
              admin: bool) -> tuple[Subscription, list[Event], bool]:  # fmt: skip
        """Get-Notifications for one subscription: its events numbered `since` or later (all kept ones
        when None), and whether it is over (its job ended: it is removed now that its events went)."""
        subscription = self.owned(subscription_id, requester, admin)
        events = [event for event in subscription.kept if since is None or event.sequence >= since]
        over = subscription.ended_at is not None
        if over:
            del self._subscriptions[subscription_id]
        return subscription, events, over


def ipp_status(error: BaseException) -> tuple[Status, str] | None:
    """The IPP status and message of one of this module's errors; None for any other error."""
    if isinstance(error, SubscriptionNotFound):
        return Status.CLIENT_ERROR_NOT_FOUND, str(error)
    if isinstance(error, TooManySubscriptions):
        return Status.CLIENT_ERROR_TOO_MANY_SUBSCRIPTIONS, str(error)
    if isinstance(error, NotRenewable):
        return Status.CLIENT_ERROR_NOT_POSSIBLE, str(error)
    return None
