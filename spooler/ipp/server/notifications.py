"""IPP event notifications, ippget pull method (RFC 3995, RFC 3996): the operations
Create-Printer-Subscriptions, Create-Job-Subscriptions, Get-Subscription-Attributes, Get-Subscriptions,
Renew-Subscription, Cancel-Subscription and Get-Notifications, subscriptions made with a job
(subscription groups in Print-Job and Create-Job), and the `Notifier` that turns changes of jobs
(the store's observers) and of printers into events. The subscriptions themselves, their bounds and
their owner checks are in spooler.ipp.server.subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spooler.ipp.server.attributes import PRINTER_STATE_ENUM, PrinterStatus
from spooler.ipp.codec import Attribute, AttributeGroup, IppMessage
from spooler.ipp.server.requests import IppError, RequestContext, _operation_attributes, _value, response_for
from spooler.ipp.server.subscriptions import (
    DEFAULT_EVENTS,
    EVENTS,
    GET_INTERVAL,
    MAX_USER_DATA,
    Event,
    Subscription,
    Subscriptions,
    TooManySubscriptions,
)
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import Job, JobState

if TYPE_CHECKING:  # the operations these extend (which import this module)
    from spooler.ipp.server.operations import PrinterOperations

#: What a change of a job is, for the events: its state, then what Set-Job-Attributes may change.
_JobMark = tuple[JobState, str, str, int, str | None, bool]


def _mark(job: Job) -> _JobMark:
    return job.state, job.reason, job.name, job.copies, job.sides, bool(job.attributes.get("hold"))


@dataclass(frozen=True)
class SubscriptionRequest:
    """A subscription-template group, checked: what to create, or the status that refuses it."""

    events: tuple[str, ...] = ()
    lease: int | None = None
    user_data: bytes = b""
    charset: str = "utf-8"
    language: str = "en"
    refusal: Status | None = None
    substituted: bool = False


def subscription_request(group: AttributeGroup, *, job: bool) -> SubscriptionRequest:
    """Check one subscription-template group (RFC 3995 5.3). Pure."""
    def single(name: str, tag: int) -> Any:
        attribute = group.get(name)
        if attribute is None:
            return None
        if len(attribute.values) != 1 or attribute.values[0].tag != tag:
            raise ValueError(name)
        return attribute.values[0].value

    try:
        if group.get("notify-recipient-uri") is not None:
            return SubscriptionRequest(refusal=Status.CLIENT_ERROR_URI_SCHEME_NOT_SUPPORTED)  # no push method
        if single("notify-pull-method", Tag.KEYWORD) != "ippget":
            return SubscriptionRequest(refusal=Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED)
        lease = single("notify-lease-duration", Tag.INTEGER)
        user_data = single("notify-user-data", Tag.OCTET_STRING) or b""
        charset = str(single("notify-charset", Tag.CHARSET) or "utf-8").lower()
        language = str(single("notify-natural-language", Tag.NATURAL_LANGUAGE) or "en")
    except ValueError:
        return SubscriptionRequest(refusal=Status.CLIENT_ERROR_BAD_REQUEST)
    if job and lease is not None:
        return SubscriptionRequest(refusal=Status.CLIENT_ERROR_BAD_REQUEST)  # a job subscription lasts with its job
    if isinstance(user_data, str):
        user_data = user_data.encode()
    if len(user_data) > MAX_USER_DATA:
        return SubscriptionRequest(refusal=Status.CLIENT_ERROR_REQUEST_VALUE_TOO_LONG)
    asked = group.get("notify-events")
    wanted = [str(v.value) for v in asked.values if v.tag == Tag.KEYWORD] if asked is not None else list(DEFAULT_EVENTS)
    events = tuple(event for event in dict.fromkeys(wanted) if event in EVENTS)
    if not events:
        return SubscriptionRequest(refusal=Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED)
    substituted = len(events) != len(wanted) or charset not in ("utf-8", "us-ascii")
    return SubscriptionRequest(events=events, lease=lease, user_data=user_data,
                               charset=charset if charset in ("utf-8", "us-ascii") else "utf-8", language=language,
                               substituted=substituted)  # fmt: skip


class Notifier:
    """Turns what happens into events for the subscriptions: every job the store writes (an observer
    of the store) and every change of a queue's printer. Does nothing while nobody subscribes."""

    def __init__(self, subscriptions: Subscriptions, printer_status: Callable[[str], PrinterStatus],
                 queues: Callable[[], list[str]]) -> None:  # fmt: skip
        self.subscriptions = subscriptions
        self._printer_status = printer_status
        self._queues = queues
        self._jobs: dict[int, _JobMark] = {}  # unfinished jobs as last seen
        self._printers: dict[str, tuple[str, tuple[str, ...], bool]] = {}
        self.primed = False

    def prime(self, jobs: list[Job]) -> None:
        """At the first subscription: what the unfinished jobs and the printers look like now."""
        if self.primed:
            return
        self.primed = True
        self._jobs = {job.job_id: _mark(job) for job in jobs if not job.state.is_final}
        for queue in self._queues():
            status = self._printer_status(queue)
            self._printers[queue] = (status.state, status.reasons, status.accepting)

    def _idle(self) -> bool:
        """Nobody subscribes: nothing to do, and what was seen is forgotten (primed again later)."""
        if self.primed and not len(self.subscriptions):
            self.primed = False
            self._jobs.clear()
            self._printers.clear()
        return not self.primed

    def job_changed(self, job: Job) -> None:
        if self._idle():
            return
        before = self._jobs.get(job.job_id)
        mark = _mark(job)
        if before is None:
            if job.state.is_final:
                return  # a finished job written again (its page figures, say): nothing happened to it
            kind = "job-created"
        elif before[:2] != mark[:2]:
            kind = {JobState.COMPLETED: "job-completed", JobState.CANCELED: "job-completed",
                    JobState.ABORTED: "job-completed",
                    JobState.PROCESSING_STOPPED: "job-stopped"}.get(job.state, "job-state-changed")  # fmt: skip
        elif before != mark:
            kind = "job-config-changed"
        else:
            return
        if job.state.is_final:
            self._jobs.pop(job.job_id, None)
        else:
            self._jobs[job.job_id] = mark
        self.subscriptions.publish(kind, queue=job.queue, text=f"Job {job.job_id} {job.state.keyword}",
                                   job=_job_snapshot(job), printer=self._printer(job.queue))  # fmt: skip
        if job.state.is_final:
            self.subscriptions.job_ended(job.job_id)
        self.printer_changed(job.queue, None)

    def printer_changed(self, queue: str | None, kind: str | None) -> None:
        """A queue's printer (None: every queue) changed; `kind` is the event if the caller knows it,
        else printer-state-changed if its state, reasons or acceptance changed."""
        if self._idle():
            return
        for name in [queue] if queue is not None else self._queues():
            status = self._printer_status(name)
            now = (status.state, status.reasons, status.accepting)
            event = kind
            if event is None and now != self._printers.get(name):
                event = "printer-stopped" if status.state == "stopped" else "printer-state-changed"
            self._printers[name] = now
            if event is not None:
                self.subscriptions.publish(event, queue=name, text=f"{status.message}", printer=_printer_snapshot(status))

    def _printer(self, queue: str) -> dict[str, Any]:
        status = self._printer_status(queue)
        return _printer_snapshot(status)


def _job_snapshot(job: Job) -> dict[str, Any]:
    return {"job-id": job.job_id, "job-state": int(job.state), "job-state-reasons": job.reason or "none",
            "job-name": job.name, "job-impressions-completed": int(job.attributes.get("impressions_reported") or 0),
            "owner": job.user}


def _printer_snapshot(status: PrinterStatus) -> dict[str, Any]:
    return {"printer-state": PRINTER_STATE_ENUM[status.state], "printer-state-reasons": status.reasons or ("none",),
            "printer-is-accepting-jobs": status.accepting, "printer-state-message": status.message}


class SubscriptionOperations:
    """The subscription operations of a PrinterOperations (package-internal: it uses its request
    helpers), and the subscriptions made with a job's creation."""

    def __init__(self, ops: PrinterOperations, subscriptions: Subscriptions) -> None:
        self.ops = ops
        self.subscriptions = subscriptions
        #: Where each subscription's printer is, as its subscriber named it (notify-printer-uri).
        self._printer_uris: dict[int, str] = {}
        self.notifier = Notifier(subscriptions, ops.printer_status, lambda: ops.queue_names())

    def handlers(self) -> dict[int, Callable[..., Any]]:
        return {
            Operation.CREATE_PRINTER_SUBSCRIPTIONS: self.create_printer_subscriptions,
            Operation.CREATE_JOB_SUBSCRIPTIONS: self.create_job_subscriptions,
            Operation.GET_SUBSCRIPTION_ATTRIBUTES: self.get_subscription_attributes,
            Operation.GET_SUBSCRIPTIONS: self.get_subscriptions,
            Operation.RENEW_SUBSCRIPTION: self.renew_subscription,
            Operation.CANCEL_SUBSCRIPTION: self.cancel_subscription,
            Operation.GET_NOTIFICATIONS: self.get_notifications,
        }

    # -- creating --------------------------------------------------------------------------------------

    def _create(self, message: IppMessage, context: RequestContext, job: Job | None) -> tuple[list[list[Attribute]], int]:
        """A subscription for each subscription-template group: the groups to answer, and how many failed."""
        groups = message.groups_of(Tag.SUBSCRIPTION)
        if groups and not self.notifier.primed:
            self.notifier.prime(self.ops.jobs.list_jobs())
        owner = self.ops._user(_operation_attributes(message)) or "anonymous"
        answers: list[list[Attribute]] = []
        failed = 0
        for group in groups:
            request = subscription_request(group, job=job is not None)
            status = request.refusal
            if status is None:
                try:
                    subscription = self.subscriptions.create(
                        owner=owner, queue=job.queue if job is not None else context.queue, events=request.events,
                        job_id=job.job_id if job is not None else None, lease=request.lease,
                        user_data=request.user_data, charset=request.charset, language=request.language,
                    )  # fmt: skip
                except TooManySubscriptions:
                    status = Status.CLIENT_ERROR_TOO_MANY_SUBSCRIPTIONS
                else:
                    self._printer_uris[subscription.subscription_id] = context.printer_uri
                    answer = [Attribute.integer("notify-subscription-id", subscription.subscription_id)]
                    if job is None and request.lease != subscription.lease:
                        answer.append(Attribute.integer("notify-lease-duration", subscription.lease))
                    if request.substituted:
                        answer.append(Attribute.enum("notify-status-code",
                                                     Status.SUCCESSFUL_OK_IGNORED_OR_SUBSTITUTED_ATTRIBUTES))
                    answers.append(answer)
                    continue
            failed += 1
            answers.append([Attribute.enum("notify-status-code", int(status))])
        return answers, failed

    def _answer(self, message: IppMessage, answers: list[list[Attribute]], failed: int) -> IppMessage:
        if not answers:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "no subscription-template group")
        if failed == len(answers):
            status = Status.CLIENT_ERROR_IGNORED_ALL_SUBSCRIPTIONS
        else:
            status = Status.SUCCESSFUL_OK_IGNORED_SUBSCRIPTIONS if failed else Status.SUCCESSFUL_OK
        response = response_for(message, status)
        for answer in answers:
            response.add_group(Tag.SUBSCRIPTION, *answer)
        return response

    def create_printer_subscriptions(self, message: IppMessage, context: RequestContext) -> IppMessage:
        answers, failed = self._create(message, context, None)
        return self._answer(message, answers, failed)

    def create_job_subscriptions(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        job_id = _value(operation, "notify-job-id", (Tag.INTEGER,))
        if job_id is None:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "notify-job-id is missing")
        job = self.ops.jobs.get(int(job_id))
        self.ops.jobs.authorize(job, self.ops._user(operation), self.ops._is_admin(operation))
        if job.state.is_final:
            raise IppError(Status.CLIENT_ERROR_NOT_POSSIBLE, f"job {job_id} is {job.state.keyword}")
        answers, failed = self._create(message, context, job)
        return self._answer(message, answers, failed)

    def with_job(self, message: IppMessage, context: RequestContext, job: Job) -> tuple[list[list[Attribute]], int]:
        """Subscriptions sent with a job's creation (Print-Job, Create-Job): (groups to answer, failed)."""
        return self._create(message, context, job) if message.groups_of(Tag.SUBSCRIPTION) else ([], 0)

    # -- reading and changing ----------------------------------------------------------------------------

    def _subscription_id(self, operation: AttributeGroup) -> int:
        subscription_id = _value(operation, "notify-subscription-id", (Tag.INTEGER,))
        if subscription_id is None:
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "notify-subscription-id is missing")
        return int(subscription_id)

    def _owned(self, operation: AttributeGroup, subscription_id: int) -> Subscription:
        return self.subscriptions.owned(subscription_id, self.ops._user(operation), self.ops._is_admin(operation))

    def describe(self, subscription: Subscription, context: RequestContext) -> list[Attribute]:
        """The subscription's attributes (RFC 3995 5.3, 5.4)."""
        attributes = [
            Attribute.integer("notify-subscription-id", subscription.subscription_id),
            Attribute.uri("notify-printer-uri", self._printer_uris.get(subscription.subscription_id,
                                                                       context.printer_uri)),
            Attribute.name("notify-subscriber-user-name", subscription.owner[:255]),
            Attribute.keyword("notify-events", *subscription.events),
            Attribute.keyword("notify-pull-method", "ippget"),
            Attribute.charset("notify-charset", subscription.charset),
            Attribute.language("notify-natural-language", subscription.language),
            Attribute.integer("notify-time-interval", 0),
            Attribute.integer("notify-sequence-number", subscription.sequence),
            Attribute.integer("notify-printer-up-time", max(1, int(self.ops.up_since))),
            Attribute.uri("notify-subscription-uuid", f"urn:uuid:{subscription.uuid}"),
        ]
        if subscription.job_id is not None:
            attributes.append(Attribute.integer("notify-job-id", subscription.job_id))
        else:
            attributes.append(Attribute.integer("notify-lease-duration", subscription.lease))
        if subscription.user_data:
            attributes.append(Attribute.octets("notify-user-data", subscription.user_data))
        return attributes

    def get_subscription_attributes(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        subscription = self._owned(operation, self._subscription_id(operation))
        requested = self.ops._requested(operation)
        attributes = self.describe(subscription, context)
        if requested is not None and "all" not in requested and "subscription-description" not in requested \
                and "subscription-template" not in requested:
            attributes = [a for a in attributes if a.name in requested]
        response = response_for(message, Status.SUCCESSFUL_OK)
        response.add_group(Tag.SUBSCRIPTION, *attributes)
        return response

    def get_subscriptions(self, message: IppMessage, context: RequestContext) -> IppMessage:
        """The subscriptions of the queue's printer (of one job with notify-job-id): a user sees its own,
        an administrator every one (or its own, with my-subscriptions)."""
        operation = _operation_attributes(message)
        job_id = _value(operation, "notify-job-id", (Tag.INTEGER,))
        limit = _value(operation, "limit", (Tag.INTEGER,))
        mine = bool(_value(operation, "my-subscriptions", (Tag.BOOLEAN,), False))
        user = self.ops._user(operation)
        if job_id is not None:
            self.ops.jobs.get(int(job_id))  # not-found for a job that does not exist
        owner = None if self.ops._is_admin(operation) and not mine else (user or "anonymous")
        found = self.subscriptions.listing(queue=context.queue, job_id=int(job_id) if job_id is not None else None,
                                           owner=owner)  # fmt: skip
        if isinstance(limit, int) and limit > 0:
            found = found[:limit]
        requested = self.ops._requested(operation)
        response = response_for(message, Status.SUCCESSFUL_OK)
        for subscription in found:
            attributes = self.describe(subscription, context)
            if requested is not None and "all" not in requested:
                attributes = [a for a in attributes if a.name in requested] or attributes[:1]
            response.add_group(Tag.SUBSCRIPTION, *attributes)
        return response

    def renew_subscription(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        subscription_id = self._subscription_id(operation)
        lease = _value(message.groups_of(Tag.SUBSCRIPTION)[0] if message.groups_of(Tag.SUBSCRIPTION) else operation,
                       "notify-lease-duration", (Tag.INTEGER,))  # fmt: skip
        if lease is None:
            lease = _value(operation, "notify-lease-duration", (Tag.INTEGER,))
        subscription = self.subscriptions.renew(subscription_id, lease, requester=self.ops._user(operation),
                                                admin=self.ops._is_admin(operation))  # fmt: skip
        response = response_for(message, Status.SUCCESSFUL_OK)
        response.groups[0].add(Attribute.integer("notify-lease-duration", subscription.lease))
        return response

    def cancel_subscription(self, message: IppMessage, context: RequestContext) -> IppMessage:
        operation = _operation_attributes(message)
        subscription_id = self._subscription_id(operation)
        self.subscriptions.cancel(subscription_id, requester=self.ops._user(operation),
                                  admin=self.ops._is_admin(operation))  # fmt: skip
        self._printer_uris.pop(subscription_id, None)
        return response_for(message, Status.SUCCESSFUL_OK)

    def get_notifications(self, message: IppMessage, context: RequestContext) -> IppMessage:
        """The events of each subscription asked for (from its notify-sequence-numbers on); answered at
        once, with notify-get-interval (notify-wait is not held open)."""
        operation = _operation_attributes(message)
        ids_attribute = operation.get("notify-subscription-ids")
        if ids_attribute is None or not ids_attribute.values or any(v.tag != Tag.INTEGER for v in ids_attribute.values):
            raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, "notify-subscription-ids is missing or not integers")
        ids = [int(v.value) for v in ids_attribute.values]  # type: ignore[arg-type]
        numbers_attribute = operation.get("notify-sequence-numbers")
        numbers = [int(v.value) for v in numbers_attribute.values if v.tag == Tag.INTEGER]  \
            if numbers_attribute is not None else []  # type: ignore[arg-type]  # fmt: skip
        requester, admin = self.ops._user(operation), self.ops._is_admin(operation)
        for subscription_id in ids:  # every one must exist and be the requester's before any is answered
            self.subscriptions.owned(subscription_id, requester, admin)
        fetched = []
        for index, subscription_id in enumerate(ids):
            since = numbers[index] if index < len(numbers) else None
            fetched.append(self.subscriptions.fetch(subscription_id, since=since, requester=requester, admin=admin))
            if fetched[-1][2]:
                self._printer_uris.pop(subscription_id, None)
        complete = all(over for _, _, over in fetched)
        response = response_for(message, Status.SUCCESSFUL_OK_EVENTS_COMPLETE if complete else Status.SUCCESSFUL_OK)
        if not complete:
            response.groups[0].add(Attribute.integer("notify-get-interval", GET_INTERVAL))
        response.groups[0].add(Attribute.integer("printer-up-time", max(1, int(self.ops._seconds()))))
        for subscription, events, _ in fetched:
            for event in events:
                response.add_group(Tag.EVENT_NOTIFICATION, *self._notification(subscription, event, context))
        return response

    def _notification(self, subscription: Subscription, event: Event, context: RequestContext) -> list[Attribute]:
        """One event notification. A job's name is private as in Get-Jobs (ipp job privacy): a
        subscriber who is neither the job's owner nor an admin does not see it."""
        private = event.job is not None and self.ops.job_privacy and subscription.owner != event.job["owner"] \
            and subscription.owner not in self.ops.admin_users
        text = event.text if event.job is None or private else f"{event.text}: {event.job['job-name']}"
        attributes = [
            Attribute.charset("notify-charset", subscription.charset),
            Attribute.language("notify-natural-language", subscription.language),
            Attribute.integer("notify-subscription-id", subscription.subscription_id),
            Attribute.uri("notify-printer-uri", self._printer_uris.get(subscription.subscription_id,
                                                                       context.printer_uri)),
            Attribute.keyword("notify-subscribed-event", event.kind),
            Attribute.integer("printer-up-time", max(1, int(event.time))),
            Attribute.integer("notify-sequence-number", event.sequence),
            Attribute.text("notify-text", text[:1023]),
        ]
        if subscription.user_data:
            attributes.append(Attribute.octets("notify-user-data", subscription.user_data))
        if event.job is not None:
            attributes += [
                Attribute.integer("job-id", event.job["job-id"]),
                Attribute.enum("job-state", event.job["job-state"]),
                Attribute.keyword("job-state-reasons", event.job["job-state-reasons"]),
                *([] if private else [Attribute.name("job-name", event.job["job-name"][:255])]),
                Attribute.integer("job-impressions-completed", event.job["job-impressions-completed"]),
            ]
        if event.printer:
            attributes += [
                Attribute.enum("printer-state", event.printer["printer-state"]),
                Attribute.keyword("printer-state-reasons", *event.printer["printer-state-reasons"]),
                Attribute.boolean("printer-is-accepting-jobs", event.printer["printer-is-accepting-jobs"]),
            ]
        return attributes
