"""The subscriptions of IPP event notifications (spooler.ipp.server.subscriptions), pure, on a Clock: leases,
caps, event life, owner checks, job subscriptions ending with their job."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from spooler.ipp.server.subscriptions import (
    EVENT_LIFE,
    MAX_EVENTS,
    MAX_LEASE,
    NotRenewable,
    SubscriptionNotFound,
    Subscriptions,
    TooManySubscriptions,
)
from spooler.model import NotAuthorized


def make(clock: Clock, **options: int) -> Subscriptions:
    clock.advance(1_700_000_000)
    return Subscriptions(clock.seconds, **options)


@pytest.mark.parametrize(("asked", "granted"), [(None, 86400), (0, MAX_LEASE), (MAX_LEASE + 1, MAX_LEASE),
                                                (-5, MAX_LEASE), (120, 120)])  # fmt: skip
def test_leases_are_granted_within_bounds(asked: int | None, granted: int) -> None:
    assert make(Clock()).grant_lease(asked) == granted


def test_a_lease_runs_out_on_the_clock() -> None:
    clock = Clock()
    subscriptions = make(clock)
    subscription = subscriptions.create(owner="ann", queue="default", events=["printer-state-changed"], lease=60)
    clock.advance(59)
    assert subscriptions.get(subscription.subscription_id) is subscription
    subscriptions.renew(subscription.subscription_id, 120, requester="ann", admin=False)
    clock.advance(119)
    assert len(subscriptions) == 1
    clock.advance(1)
    assert len(subscriptions) == 0
    with pytest.raises(SubscriptionNotFound):
        subscriptions.get(subscription.subscription_id)


def test_at_most_max_subscriptions() -> None:
    subscriptions = make(Clock(), max_subscriptions=3)
    made = [subscriptions.create(owner="ann", queue="default", events=["job-created"]) for _ in range(3)]
    with pytest.raises(TooManySubscriptions):
        subscriptions.create(owner="bob", queue="default", events=["job-created"])
    subscriptions.cancel(made[0].subscription_id, requester="ann", admin=False)
    subscriptions.create(owner="bob", queue="default", events=["job-created"])


def test_events_reach_the_subscriptions_that_want_them() -> None:
    subscriptions = make(Clock())
    printer = subscriptions.create(owner="ann", queue="default", events=["printer-state-changed"])
    jobs = subscriptions.create(owner="ann", queue="default", events=["job-state-changed"])
    job_7 = subscriptions.create(owner="ann", queue="default", events=["job-completed"], job_id=7)
    other_queue = subscriptions.create(owner="ann", queue="front", events=["job-completed", "printer-stopped"])
    assert subscriptions.publish("printer-stopped", queue="default", text="paused") == 1  # a kind of state change
    assert subscriptions.publish("job-completed", queue="default", text="done", job={"job-id": 8}) == 1
    assert subscriptions.publish("job-completed", queue="default", text="done", job={"job-id": 7}) == 2
    assert [e.kind for e in printer.kept] == ["printer-stopped"]
    assert [(e.sequence, e.job["job-id"]) for e in jobs.kept] == [(1, 8), (2, 7)]  # type: ignore[index]
    assert [e.job["job-id"] for e in job_7.kept] == [7]  # type: ignore[index]
    assert not other_queue.kept


def test_events_kept_are_bounded_in_number_and_age() -> None:
    clock = Clock()
    subscriptions = make(clock)
    subscription = subscriptions.create(owner="ann", queue="default", events=["job-created"])
    for number in range(MAX_EVENTS + 20):
        subscriptions.publish("job-created", queue="default", text="", job={"job-id": number})
    assert len(subscription.kept) == MAX_EVENTS
    assert subscription.kept[0].sequence == 21 and subscription.sequence == MAX_EVENTS + 20  # the oldest went
    _, events, over = subscriptions.fetch(subscription.subscription_id, since=MAX_EVENTS + 19, requester="ann",
                                          admin=False)  # fmt: skip
    assert [e.sequence for e in events] == [MAX_EVENTS + 19, MAX_EVENTS + 20] and not over
    clock.advance(EVENT_LIFE)
    assert not subscriptions.fetch(subscription.subscription_id, since=None, requester="ann", admin=False)[1]


def test_only_the_owner_or_an_admin_uses_a_subscription() -> None:
    subscriptions = make(Clock())
    subscription = subscriptions.create(owner="ann", queue="default", events=["job-created"])
    for use in (lambda who, admin: subscriptions.fetch(subscription.subscription_id, since=None, requester=who,
                                                       admin=admin),
                lambda who, admin: subscriptions.renew(subscription.subscription_id, 60, requester=who, admin=admin),
                lambda who, admin: subscriptions.cancel(subscription.subscription_id, requester=who, admin=admin)):
        with pytest.raises(NotAuthorized):
            use("eve", False)
        with pytest.raises(NotAuthorized):
            use(None, False)
    subscriptions.renew(subscription.subscription_id, 60, requester="root", admin=True)
    subscriptions.cancel(subscription.subscription_id, requester="root", admin=True)
    assert len(subscriptions) == 0


def test_a_job_subscription_ends_with_its_job() -> None:
    clock = Clock()
    subscriptions = make(clock)
    fetched = subscriptions.create(owner="ann", queue="default", events=["job-completed"], job_id=3)
    forgotten = subscriptions.create(owner="ann", queue="default", events=["job-completed"], job_id=3)
    with pytest.raises(NotRenewable):
        subscriptions.renew(fetched.subscription_id, 60, requester="ann", admin=False)
    subscriptions.publish("job-completed", queue="default", text="done", job={"job-id": 3})
    subscriptions.job_ended(3)
    _, events, over = subscriptions.fetch(fetched.subscription_id, since=None, requester="ann", admin=False)
    assert [e.kind for e in events] == ["job-completed"] and over
    with pytest.raises(SubscriptionNotFound):
        subscriptions.get(fetched.subscription_id)
    clock.advance(EVENT_LIFE)  # nobody asked: gone once its last events are too old
    with pytest.raises(SubscriptionNotFound):
        subscriptions.get(forgotten.subscription_id)
