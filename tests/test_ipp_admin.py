"""The IPP/2.1-2.2 operations for administrators and job owners, in process: queues enabled, disabled,
holding new jobs, described, shut down; jobs changed before they print, printed again, suspended,
reordered, canceled and purged; documents listed, canceled and named. Who may do what is checked."""

from __future__ import annotations

from pathlib import Path

from inprocess import Rig
from spooler.accounting.records import RecordMaker
from spooler.ipp.codec import Attribute, IppMessage
from spooler.ipp.tags import Operation, Status, Tag
from spooler.model import JobState
from test_ipp_operations import PDF, Client, ipp_request, job_id_of, print_job, status_of
from test_ipp_operations import client, rig, site  # noqa: F401  (fixtures: root is an admin)


def accounted(tmp_path: Path) -> tuple[Rig, Client]:
    """The `rig` and `client` of test_ipp_operations, whose store also writes accounting records."""
    rig = Rig(tmp_path, ipp={"admin_users": ["root"]}, record_maker=RecordMaker(device="d"))
    rig.dispatcher.start()
    return rig, Client(rig.ipp_site())


def call(client: Client, operation: int, *extra: Attribute, user: str = "alice", job: list[Attribute] | None = None,
         group: tuple[int, list[Attribute]] | None = None) -> IppMessage:  # fmt: skip
    message = ipp_request(operation, *extra, user=user, job=job)
    if group is not None:
        message.add_group(group[0], *group[1])
    return client.call(message)


def job_of(job_id: int) -> Attribute:
    return Attribute.integer("job-id", job_id)


def printer(client: Client, *names: str) -> dict[str, object]:
    answer = call(client, Operation.GET_PRINTER_ATTRIBUTES, Attribute.keyword("requested-attributes", *names))
    assert answer.printer_attributes is not None
    return {attribute.name: attribute.first for attribute in answer.printer_attributes.attributes}


def test_printer_operations_are_for_administrators(client: Client) -> None:
    for operation in (Operation.ENABLE_PRINTER, Operation.DISABLE_PRINTER, Operation.HOLD_NEW_JOBS,
                      Operation.RELEASE_HELD_NEW_JOBS, Operation.RESTART_PRINTER, Operation.SHUTDOWN_PRINTER,
                      Operation.STARTUP_PRINTER, Operation.PAUSE_PRINTER_AFTER_CURRENT_JOB, Operation.PURGE_JOBS,
                      Operation.CANCEL_JOBS, Operation.CANCEL_CURRENT_JOB, Operation.SUSPEND_CURRENT_JOB,
                      Operation.SET_PRINTER_ATTRIBUTES):  # fmt: skip
        assert status_of(call(client, operation, user="alice")) == Status.CLIENT_ERROR_NOT_AUTHORIZED, operation


def test_a_disabled_queue_refuses_jobs_until_enabled(rig: Rig, client: Client) -> None:
    assert status_of(call(client, Operation.DISABLE_PRINTER, user="root")) == Status.SUCCESSFUL_OK
    assert printer(client, "printer-is-accepting-jobs")["printer-is-accepting-jobs"] is False
    refused = print_job(client)
    assert status_of(refused) == Status.SERVER_ERROR_NOT_ACCEPTING_JOBS
    assert status_of(call(client, Operation.CREATE_JOB)) == Status.SERVER_ERROR_NOT_ACCEPTING_JOBS
    assert rig.store.list_jobs() == [] and list(rig.config.incoming_dir.iterdir()) == []
    again = Rig(rig.config.state_dir.parent, ipp={"admin_users": ["root"]})  # kept across a restart
    assert not again.service.accepting_jobs("default")
    call(client, Operation.ENABLE_PRINTER, user="root")
    assert status_of(print_job(client)) == Status.SUCCESSFUL_OK


def test_new_jobs_are_held_until_released(rig: Rig, client: Client) -> None:
    call(client, Operation.HOLD_NEW_JOBS, user="root")
    assert "hold-new-jobs" in str(printer(client, "printer-state-reasons")["printer-state-reasons"])
    job_id = job_id_of(print_job(client))
    held = rig.store.get(job_id)
    assert (held.state, held.reason) == (JobState.PENDING_HELD, "job-held-on-create")
    rig.clock.advance(0)
    assert rig.backend.attempts == []
    call(client, Operation.RELEASE_HELD_NEW_JOBS, user="root")
    assert rig.store.get(job_id).state == JobState.PENDING
    rig.clock.advance(0)
    assert [job for job, _ in rig.backend.attempts] == [job_id]


def test_printer_texts_are_set_by_an_administrator_and_kept(rig: Rig, client: Client) -> None:
    texts = [Attribute.text("printer-location", "Room 12, 2nd floor"),
             Attribute.text("printer-message-from-operator", "Toner ordered")]  # fmt: skip
    assert status_of(call(client, Operation.SET_PRINTER_ATTRIBUTES, user="root", group=(Tag.PRINTER, texts))) == \
        Status.SUCCESSFUL_OK
    shown = printer(client, "printer-location", "printer-message-from-operator", "printer-config-change-time")
    assert (shown["printer-location"], shown["printer-message-from-operator"]) == ("Room 12, 2nd floor",
                                                                                 "Toner ordered")  # fmt: skip
    name = call(client, Operation.SET_PRINTER_ATTRIBUTES, user="root",
                group=(Tag.PRINTER, [Attribute.name("printer-name", "mine")]))  # fmt: skip
    assert status_of(name) == Status.CLIENT_ERROR_ATTRIBUTES_NOT_SETTABLE
    [unsupported] = name.groups_of(Tag.UNSUPPORTED_GROUP)
    assert unsupported["printer-name"].values[0].tag == Tag.NOT_SETTABLE
    supported = call(client, Operation.GET_PRINTER_SUPPORTED_VALUES, user="root").printer_attributes
    assert supported is not None and supported["printer-location"].values[0].tag == Tag.ADMIN_DEFINE
    restarted = Client(Rig(rig.config.state_dir.parent).ipp_site())
    assert printer(restarted, "printer-location")["printer-location"] == "Room 12, 2nd floor"
    cleared = call(client, Operation.SET_PRINTER_ATTRIBUTES, user="root",
                   group=(Tag.PRINTER, [Attribute.text("printer-location", "")]))  # fmt: skip
    assert status_of(cleared) == Status.SUCCESSFUL_OK
    assert printer(client, "printer-location")["printer-location"] == rig.config.ipp.location  # the configured one


def test_shutdown_stops_everything_until_startup(rig: Rig, client: Client) -> None:
    job_id = job_id_of(print_job(client))
    call(client, Operation.SHUTDOWN_PRINTER, user="root")
    shown = printer(client, "printer-state", "printer-is-accepting-jobs", "printer-state-reasons")
    assert (shown["printer-state"], shown["printer-is-accepting-jobs"], shown["printer-state-reasons"]) == \
        (5, False, "shutdown")  # fmt: skip
    rig.clock.advance(0)
    assert rig.backend.attempts == [] and status_of(print_job(client)) == Status.SERVER_ERROR_NOT_ACCEPTING_JOBS
    call(client, Operation.STARTUP_PRINTER, user="root")
    rig.clock.advance(0)
    assert [job for job, _ in rig.backend.attempts] == [job_id]
    assert printer(client, "printer-state")["printer-state"] == 4


def test_set_job_attributes_changes_a_waiting_job_for_its_owner(rig: Rig, client: Client) -> None:
    rig.service.pause_printer(by="test")
    job_id = job_id_of(print_job(client))
    eve = call(client, Operation.SET_JOB_ATTRIBUTES, job_of(job_id), user="eve",
               job=[Attribute.name("job-name", "mine now")])  # fmt: skip
    assert status_of(eve) == Status.CLIENT_ERROR_NOT_AUTHORIZED
    changed = call(client, Operation.SET_JOB_ATTRIBUTES, job_of(job_id),
                   job=[Attribute.name("job-name", "Final report"), Attribute.integer("copies", 3),
                        Attribute.keyword("sides", "two-sided-long-edge"),
                        Attribute.keyword("job-hold-until", "indefinite")])  # fmt: skip
    assert status_of(changed) == Status.SUCCESSFUL_OK
    job = rig.store.get(job_id)
    assert (job.name, job.copies, job.sides, job.state) == ("Final report", 3, "two-sided-long-edge",
                                                            JobState.PENDING_HELD)  # fmt: skip
    call(client, Operation.SET_JOB_ATTRIBUTES, job_of(job_id), job=[Attribute.keyword("job-hold-until", "no-hold")])
    assert rig.store.get(job_id).state == JobState.PENDING
    for wrong, status in (([Attribute.keyword("media", "iso_a4_210x297mm")], Status.CLIENT_ERROR_ATTRIBUTES_NOT_SETTABLE),
                          ([Attribute.integer("copies", 0)], Status.CLIENT_ERROR_ATTRIBUTES_OR_VALUES_NOT_SUPPORTED)):
        assert status_of(call(client, Operation.SET_JOB_ATTRIBUTES, job_of(job_id), job=wrong)) == status
    rig.service.resume_printer(by="test")
    rig.clock.advance(0)
    late = call(client, Operation.SET_JOB_ATTRIBUTES, job_of(job_id), job=[Attribute.integer("copies", 1)])
    assert status_of(late) == Status.CLIENT_ERROR_NOT_POSSIBLE  # it is printing
    assert rig.backend.attempts and rig.store.get(job_id).copies == 3


def test_a_finished_job_prints_again_as_a_new_job(tmp_path: Path) -> None:
    rig, client = accounted(tmp_path)
    job_id = job_id_of(print_job(client))
    rig.clock.advance(0)
    rig.backend.succeed()
    assert status_of(call(client, Operation.RESTART_JOB, job_of(job_id), user="eve")) == \
        Status.CLIENT_ERROR_NOT_AUTHORIZED
    restarted = call(client, Operation.RESTART_JOB, job_of(job_id))
    again = job_id_of(restarted)
    assert status_of(restarted) == Status.SUCCESSFUL_OK and again != job_id
    resubmitted = call(client, Operation.RESUBMIT_JOB, job_of(job_id), job=[Attribute.integer("copies", 2)])
    third = job_id_of(resubmitted)
    rig.clock.advance(0)
    rig.backend.succeed()
    rig.clock.advance(0)
    rig.backend.succeed()
    assert [data for _, data in rig.backend.attempts] == [PDF, PDF, PDF]
    copies = rig.store.get(third)
    assert copies.copies == 2 and copies.attributes["copied_from"] == job_id
    assert rig.store.get(again).state == JobState.COMPLETED and rig.store.get(job_id).state == JobState.COMPLETED
    assert all(rig.store.record_of(job) is not None for job in (job_id, again, third))  # one record each
    waiting = job_id_of(print_job(client))
    assert status_of(call(client, Operation.REPROCESS_JOB, job_of(waiting))) == Status.CLIENT_ERROR_NOT_POSSIBLE


def test_suspend_and_resume_the_job_being_printed(rig: Rig, client: Client) -> None:
    first, second = job_id_of(print_job(client)), job_id_of(print_job(client))
    rig.clock.advance(0)
    assert status_of(call(client, Operation.SUSPEND_CURRENT_JOB, user="root")) == Status.SUCCESSFUL_OK
    suspended = rig.store.get(first)
    assert (suspended.state, suspended.reason) == (JobState.PROCESSING_STOPPED, "job-suspended")
    assert rig.backend.canceled == 1 and rig.backend.pending.pop(0).called  # the cut-off attempt
    rig.clock.advance(0)
    assert [job for job, _ in rig.backend.attempts] == [first, second]  # the queue goes on
    rig.backend.succeed()
    assert status_of(call(client, Operation.RESUME_JOB, job_of(first))) == Status.SUCCESSFUL_OK
    rig.clock.advance(0)
    assert [job for job, _ in rig.backend.attempts] == [first, second, first]
    assert status_of(call(client, Operation.RESUME_JOB, job_of(second))) == Status.CLIENT_ERROR_NOT_POSSIBLE
    assert status_of(call(client, Operation.CANCEL_CURRENT_JOB, user="root")) == Status.SUCCESSFUL_OK
    assert rig.store.get(first).state == JobState.CANCELED
    assert status_of(call(client, Operation.CANCEL_CURRENT_JOB, user="root")) == Status.CLIENT_ERROR_NOT_POSSIBLE


def test_an_administrator_reorders_the_queue(rig: Rig, client: Client) -> None:
    rig.service.pause_printer(by="test")
    jobs = [job_id_of(print_job(client)) for _ in range(4)]
    assert status_of(call(client, Operation.PROMOTE_JOB, job_of(jobs[3]), user="alice")) == \
        Status.CLIENT_ERROR_NOT_AUTHORIZED
    call(client, Operation.PROMOTE_JOB, job_of(jobs[3]), user="root")
    call(client, Operation.SCHEDULE_JOB_AFTER, job_of(jobs[0]), Attribute.integer("predecessor-job-id", jobs[2]),
         user="root")  # fmt: skip
    assert [job for job, _ in rig.store.queue_order("default")] == [jobs[3], jobs[1], jobs[2], jobs[0]]
    rig.service.resume_printer(by="test")
    delivered = []
    for _ in jobs:
        rig.clock.advance(0)
        delivered.append(rig.backend.attempts[-1][0])
        rig.backend.succeed()
    assert delivered == [jobs[3], jobs[1], jobs[2], jobs[0]]


def test_cancel_jobs_and_purge_jobs(tmp_path: Path) -> None:
    rig, client = accounted(tmp_path)
    rig.service.pause_printer(by="test")
    jobs = [job_id_of(print_job(client)) for _ in range(3)]
    rig.service.resume_printer(by="test")
    rig.clock.advance(0)  # jobs[0] is being delivered
    rig.service.pause_printer(by="test")
    call(client, Operation.CANCEL_JOBS, Attribute.integer("job-ids", jobs[0], jobs[1]), user="root")
    assert [rig.store.get(job).state for job in jobs] == [JobState.CANCELED, JobState.CANCELED, JobState.PENDING]
    again = call(client, Operation.CANCEL_JOBS, Attribute.integer("job-ids", jobs[0], jobs[2]), user="root")
    assert status_of(again) == Status.CLIENT_ERROR_NOT_POSSIBLE and rig.store.get(jobs[2]).state == JobState.PENDING
    files = [rig.config.spool_dir / d.file_name for job in jobs for d in rig.store.documents(job)]
    assert status_of(call(client, Operation.PURGE_JOBS, user="root")) == Status.SUCCESSFUL_OK
    assert rig.store.list_jobs() == [] and not any(path.exists() for path in files)
    assert rig.backend.canceled == 1 and rig.dispatcher.busy_with is None  # the delivery was cut off
    assert [rig.store.record_of(job) is not None for job in jobs] == [True] * 3  # accounting keeps them


def test_documents_are_listed_canceled_and_named(rig: Rig, client: Client) -> None:
    rig.service.pause_printer(by="test")
    job_id = job_id_of(call(client, Operation.CREATE_JOB))
    for number, last in ((1, False), (2, True)):
        sent = client.call(ipp_request(Operation.SEND_DOCUMENT, job_of(job_id),
                                       Attribute.boolean("last-document", last)), PDF + bytes([number]))  # fmt: skip
        assert status_of(sent) == Status.SUCCESSFUL_OK
    listed = call(client, Operation.GET_DOCUMENTS, job_of(job_id), Attribute.keyword("requested-attributes", "all"))
    documents = listed.groups_of(Tag.DOCUMENT)
    assert [(d["document-number"].first, d["document-state"].first) for d in documents] == [(1, 3), (2, 3)]
    named = call(client, Operation.SET_DOCUMENT_ATTRIBUTES, job_of(job_id), Attribute.integer("document-number", 2),
                 group=(Tag.DOCUMENT, [Attribute.name("document-name", "appendix.pdf")]))  # fmt: skip
    assert status_of(named) == Status.SUCCESSFUL_OK
    assert status_of(call(client, Operation.CANCEL_DOCUMENT, job_of(job_id), Attribute.integer("document-number", 1),
                          user="eve")) == Status.CLIENT_ERROR_NOT_AUTHORIZED  # fmt: skip
    call(client, Operation.CANCEL_DOCUMENT, job_of(job_id), Attribute.integer("document-number", 1))
    one = call(client, Operation.GET_DOCUMENT_ATTRIBUTES, job_of(job_id), Attribute.integer("document-number", 2))
    [document] = one.groups_of(Tag.DOCUMENT)
    assert document["document-name"].first == "appendix.pdf"
    first = call(client, Operation.GET_DOCUMENT_ATTRIBUTES, job_of(job_id), Attribute.integer("document-number", 1))
    assert first.groups_of(Tag.DOCUMENT)[0]["document-state"].first == 7
    rig.service.resume_printer(by="test")
    rig.clock.advance(0)
    assert rig.backend.attempts == [(job_id, PDF + b"\x02")]  # the canceled document is not printed
    missing = call(client, Operation.GET_DOCUMENT_ATTRIBUTES, job_of(job_id), Attribute.integer("document-number", 9))
    assert status_of(missing) == Status.CLIENT_ERROR_NOT_FOUND
