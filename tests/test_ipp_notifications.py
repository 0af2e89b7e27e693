"""IPP event notifications in process (RFC 3995/3996, ippget): subscriptions made, read, renewed and
canceled over the IPP site, events of real job lifecycles fetched with Get-Notifications, owners
checked, bounds and lease expiry on the injected clock."""

from __future__ import annotations

from inprocess import Rig
from spooler.ipp.codec import Attribute, IppMessage
from spooler.ipp.server.subscriptions import GET_INTERVAL, MAX_SUBSCRIPTIONS
from spooler.ipp.tags import Operation, Status, Tag
from test_ipp_operations import PDF, Client, ipp_request, job_id_of, print_job, status_of
from test_ipp_operations import client, rig, site  # noqa: F401  (fixtures: root is an admin)


def subscribe(client: Client, *groups: list[Attribute], user: str = "alice", operation: int =
              Operation.CREATE_PRINTER_SUBSCRIPTIONS, extra: tuple[Attribute, ...] = ()) -> IppMessage:  # fmt: skip
    message = ipp_request(operation, *extra, user=user)
    for group in groups:
        message.add_group(Tag.SUBSCRIPTION, *group)
    return client.call(message)


def pull(*events: str, lease: int | None = None) -> list[Attribute]:
    group = [Attribute.keyword("notify-pull-method", "ippget")]
    if events:
        group.append(Attribute.keyword("notify-events", *events))
    if lease is not None:
        group.append(Attribute.integer("notify-lease-duration", lease))
    return group


def subscription_ids(response: IppMessage) -> list[int]:
    return [int(group["notify-subscription-id"].first) for group in response.groups_of(Tag.SUBSCRIPTION)  # type: ignore
            if "notify-subscription-id" in group]


def notifications(client: Client, *ids: int, user: str = "alice", since: list[int] | None = None) -> IppMessage:
    extra = [Attribute.integer("notify-subscription-ids", *ids)]
    if since is not None:
        extra.append(Attribute.integer("notify-sequence-numbers", *since))
    return client.call(ipp_request(Operation.GET_NOTIFICATIONS, *extra, user=user))


def events(response: IppMessage) -> list[tuple[str, int | None, int | None]]:
    """(event, job-id, job-state) of each event notification."""
    return [(str(group["notify-subscribed-event"].first), group.get("job-id") and group["job-id"].first,  # type: ignore
             group.get("job-state") and group["job-state"].first)  # type: ignore[union-attr]
            for group in response.groups_of(Tag.EVENT_NOTIFICATION)]


def test_a_printer_subscription_sees_a_job_from_creation_to_completion(rig: Rig, client: Client) -> None:
    created = subscribe(client, pull("job-state-changed", "printer-state-changed"))
    assert status_of(created) == Status.SUCCESSFUL_OK
    [subscription_id] = subscription_ids(created)
    job_id = job_id_of(print_job(client))
    rig.clock.advance(0)  # the delivery starts
    rig.backend.succeed()
    got = notifications(client, subscription_id)
    assert status_of(got) == Status.SUCCESSFUL_OK
    assert got.operation_attributes["notify-get-interval"].first == GET_INTERVAL  # type: ignore[index]
    kinds = events(got)
    assert kinds[0] == ("job-created", job_id, 3)
    assert ("job-state-changed", job_id, 5) in kinds and kinds[-2:] == [("job-completed", job_id, 9),
                                                                       ("printer-state-changed", None, None)]
    first = got.groups_of(Tag.EVENT_NOTIFICATION)[0]
    assert first["notify-sequence-number"].first == 1 and first["notify-printer-uri"].first.endswith("/ipp/print")
    last = got.groups_of(Tag.EVENT_NOTIFICATION)[-1]["notify-sequence-number"].first
    later = notifications(client, subscription_id, since=[last + 1])  # type: ignore[operator]
    assert events(later) == []  # nothing new since


def test_subscriptions_with_a_job_end_with_it(rig: Rig, client: Client) -> None:
    message = ipp_request(Operation.PRINT_JOB, Attribute.name("job-name", "watched"), user="alice")
    message.add_group(Tag.SUBSCRIPTION, *pull("job-completed"))
    answer = client.call(message, PDF)
    [subscription_id] = subscription_ids(answer)
    rig.clock.advance(0)
    rig.backend.succeed()
    got = notifications(client, subscription_id)
    assert status_of(got) == Status.SUCCESSFUL_OK_EVENTS_COMPLETE and "notify-get-interval" not in got.groups[0]
    assert events(got) == [("job-completed", job_id_of(answer), 9)]
    gone = notifications(client, subscription_id)
    assert status_of(gone) == Status.CLIENT_ERROR_NOT_FOUND


def test_create_job_subscriptions_is_for_the_owner_of_an_unfinished_job(rig: Rig, client: Client) -> None:
    job_id = job_id_of(print_job(client, user="alice"))
    refused = subscribe(client, pull("job-completed"), user="eve", operation=Operation.CREATE_JOB_SUBSCRIPTIONS,
                        extra=(Attribute.integer("notify-job-id", job_id),))  # fmt: skip
    assert status_of(refused) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    made = subscribe(client, pull("job-completed"), operation=Operation.CREATE_JOB_SUBSCRIPTIONS,
                     extra=(Attribute.integer("notify-job-id", job_id),))  # fmt: skip
    [subscription_id] = subscription_ids(made)
    described = client.call(ipp_request(Operation.GET_SUBSCRIPTION_ATTRIBUTES,
                                        Attribute.integer("notify-subscription-id", subscription_id)))  # fmt: skip
    [group] = described.groups_of(Tag.SUBSCRIPTION)
    assert group["notify-job-id"].first == job_id and group["notify-subscriber-user-name"].first == "alice"
    assert "notify-lease-duration" not in group
    renewed = client.call(ipp_request(Operation.RENEW_SUBSCRIPTION,
                                      Attribute.integer("notify-subscription-id", subscription_id)))  # fmt: skip
    assert status_of(renewed) == Status.CLIENT_ERROR_NOT_POSSIBLE  # it lasts as long as its job
    missing = subscribe(client, pull("job-completed"), operation=Operation.CREATE_JOB_SUBSCRIPTIONS,
                        extra=(Attribute.integer("notify-job-id", 999),))  # fmt: skip
    assert status_of(missing) == Status.CLIENT_ERROR_NOT_FOUND


def test_each_user_sees_and_changes_only_their_own_subscriptions(client: Client) -> None:
    [alice] = subscription_ids(subscribe(client, pull("job-created"), user="alice"))
    [bob] = subscription_ids(subscribe(client, pull("job-created"), user="bob"))

    def listed(user: str, *extra: Attribute) -> list[int]:
        answer = client.call(ipp_request(Operation.GET_SUBSCRIPTIONS, *extra, user=user))
        return subscription_ids(answer)

    assert listed("alice") == [alice] and listed("bob") == [bob]
    assert listed("root") == [alice, bob] and listed("root", Attribute.boolean("my-subscriptions", True)) == []
    for operation in (Operation.GET_SUBSCRIPTION_ATTRIBUTES, Operation.RENEW_SUBSCRIPTION,
                      Operation.CANCEL_SUBSCRIPTION):
        answer = client.call(ipp_request(operation, Attribute.integer("notify-subscription-id", alice), user="bob"))
        assert status_of(answer) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    assert status_of(notifications(client, alice, bob, user="bob")) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    canceled = client.call(ipp_request(Operation.CANCEL_SUBSCRIPTION, Attribute.integer("notify-subscription-id",
                                                                                         alice)))  # fmt: skip
    assert status_of(canceled) == Status.SUCCESSFUL_OK and listed("root") == [bob]


def test_what_cannot_be_subscribed_is_refused_group_by_group(client: Client) -> None:
    push = [Attribute.uri("notify-recipient-uri", "rss://127.0.0.1/../job.cache"),
            Attribute.keyword("notify-events", "job-completed")]  # fmt: skip
    answer = subscribe(client, push)
    assert status_of(answer) == Status.CLIENT_ERROR_IGNORED_ALL_SUBSCRIPTIONS
    assert answer.groups_of(Tag.SUBSCRIPTION)[0]["notify-status-code"].first == \
        Status.CLIENT_ERROR_URI_SCHEME_NOT_SUPPORTED
    big = pull("job-completed") + [Attribute.octets("notify-user-data", b"x" * 64)]
    mixed = subscribe(client, pull("job-completed", "no-such-event"), big, pull("nothing-known"))
    assert status_of(mixed) == Status.SUCCESSFUL_OK_IGNORED_SUBSCRIPTIONS
    first, too_long, unknown = mixed.groups_of(Tag.SUBSCRIPTION)
    assert "notify-subscription-id" in first  # the event it knows is kept
    assert too_long["notify-status-code"].first == Status.CLIENT_ERROR_REQUEST_VALUE_TOO_LONG
    assert unknown["notify-status-code"].first == Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED
    assert status_of(client.call(ipp_request(Operation.CREATE_PRINTER_SUBSCRIPTIONS))) == \
        Status.CLIENT_ERROR_BAD_REQUEST  # no group at all


def test_subscriptions_are_capped_and_leases_run_out_on_the_clock(rig: Rig, client: Client) -> None:
    half = MAX_SUBSCRIPTIONS // 2  # a request carries at most 100 groups (the codec's bound)
    first = subscription_ids(subscribe(client, *[pull("job-created", lease=60) for _ in range(half)]))[0]
    answer = subscribe(client, *[pull("job-created", lease=60) for _ in range(MAX_SUBSCRIPTIONS - half + 2)])
    assert status_of(answer) == Status.SUCCESSFUL_OK_IGNORED_SUBSCRIPTIONS
    statuses = [group.get("notify-status-code") for group in answer.groups_of(Tag.SUBSCRIPTION)]
    assert statuses[:-2] == [None] * (MAX_SUBSCRIPTIONS - half)
    assert [s.first for s in statuses[-2:]] == [Status.CLIENT_ERROR_TOO_MANY_SUBSCRIPTIONS] * 2  # type: ignore
    rig.clock.advance(30)
    renewed = client.call(ipp_request(Operation.RENEW_SUBSCRIPTION, Attribute.integer("notify-subscription-id", first),
                                      Attribute.integer("notify-lease-duration", 120)))  # fmt: skip
    assert renewed.operation_attributes["notify-lease-duration"].first == 120  # type: ignore[index]
    rig.clock.advance(31)  # the others' leases ran out
    listed = client.call(ipp_request(Operation.GET_SUBSCRIPTIONS, user="root"))
    assert subscription_ids(listed) == [first]
    assert status_of(subscribe(client, pull("job-created"))) == Status.SUCCESSFUL_OK  # room again


def test_printer_events_follow_the_administrator(rig: Rig, client: Client) -> None:
    [subscription_id] = subscription_ids(subscribe(client, pull("printer-state-changed", "printer-config-changed"),
                                                   user="root"))  # fmt: skip
    for operation in (Operation.PAUSE_PRINTER, Operation.RESUME_PRINTER, Operation.DISABLE_PRINTER):
        assert status_of(client.call(ipp_request(operation, user="root"))) == Status.SUCCESSFUL_OK
    location = ipp_request(Operation.SET_PRINTER_ATTRIBUTES, user="root")
    location.add_group(Tag.PRINTER, Attribute.text("printer-location", "Room 12"))
    assert status_of(client.call(location)) == Status.SUCCESSFUL_OK
    got = notifications(client, subscription_id, user="root")
    kinds = [group["notify-subscribed-event"].first for group in got.groups_of(Tag.EVENT_NOTIFICATION)]
    assert kinds == ["printer-stopped", "printer-state-changed", "printer-state-changed", "printer-config-changed"]
    accepting = [group["printer-is-accepting-jobs"].first for group in got.groups_of(Tag.EVENT_NOTIFICATION)]
    assert accepting == [True, True, False, False]


def test_what_happened_while_nobody_subscribed_is_not_told_as_new(rig: Rig, client: Client) -> None:
    """Once every subscription is gone the notifier forgets what it saw; the next subscriber's events
    are still right: a job made in between is not announced as created when it changes."""
    [first] = subscription_ids(subscribe(client, pull("job-state-changed"), user="root"))
    client.call(ipp_request(Operation.CANCEL_SUBSCRIPTION, Attribute.integer("notify-subscription-id", first),
                            user="root"))  # fmt: skip
    rig.service.pause_printer(by="test")
    job_id = job_id_of(print_job(client))  # nobody is subscribed
    [second] = subscription_ids(subscribe(client, pull("job-state-changed")))
    client.call(ipp_request(Operation.HOLD_JOB, Attribute.integer("job-id", job_id)))
    assert events(notifications(client, second)) == [("job-state-changed", job_id, 4)]


def test_with_job_privacy_other_users_events_do_not_name_the_job(rig: Rig, client: Client, site: object) -> None:
    """As Get-Jobs with IPP authentication: a subscriber sees the names of their own jobs only."""
    site.operations.job_privacy = True  # type: ignore[attr-defined]  # on when [ipp] authentication is basic
    [bob] = subscription_ids(subscribe(client, pull("job-created"), user="bob"))
    [alice] = subscription_ids(subscribe(client, pull("job-created"), user="alice"))
    print_job(client, user="alice")
    [theirs] = notifications(client, bob, user="bob").groups_of(Tag.EVENT_NOTIFICATION)
    [own] = notifications(client, alice).groups_of(Tag.EVENT_NOTIFICATION)
    assert "job-name" not in theirs and "Quarterly report" not in str(theirs["notify-text"].first)
    assert own["job-name"].first == "Quarterly report" and "Quarterly report" in str(own["notify-text"].first)
