"""The job state machine, table-tested: every pair of states is either allowed or raises."""

from __future__ import annotations

import itertools

import pytest

from factories import job_factory
from spooler.model import IllegalTransition, JobState
from spooler.states import ALLOWED, can_transition, recover_after_restart, transition

S = JobState


make_job = job_factory(uuid="u", name="n", size=10)


EXPECTED_ALLOWED = {
    (S.PENDING, S.PENDING_HELD), (S.PENDING, S.PROCESSING), (S.PENDING, S.CANCELED), (S.PENDING, S.ABORTED),
    (S.PENDING_HELD, S.PENDING), (S.PENDING_HELD, S.CANCELED), (S.PENDING_HELD, S.ABORTED),
    (S.PENDING_HELD, S.COMPLETED),  # printed by the central server while held here
    (S.PROCESSING, S.COMPLETED), (S.PROCESSING, S.PENDING), (S.PROCESSING, S.PROCESSING_STOPPED),
    (S.PROCESSING, S.CANCELED), (S.PROCESSING, S.ABORTED),
    (S.PROCESSING_STOPPED, S.PROCESSING), (S.PROCESSING_STOPPED, S.PENDING),
    (S.PROCESSING_STOPPED, S.CANCELED), (S.PROCESSING_STOPPED, S.ABORTED),
}  # fmt: skip


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(S, S)))
def test_every_pair_is_allowed_or_raises(current: JobState, wanted: JobState) -> None:
    job = make_job(state=current)
    if (current, wanted) in EXPECTED_ALLOWED:
        assert can_transition(current, wanted)
        assert transition(job, wanted, now=5.0).state == wanted
    else:
        assert not can_transition(current, wanted)
        with pytest.raises(IllegalTransition) as raised:
            transition(job, wanted, now=5.0)
        assert raised.value.current == current and raised.value.wanted == wanted


def test_table_matches_the_documented_one() -> None:
    assert ALLOWED == EXPECTED_ALLOWED


@pytest.mark.parametrize("final", [S.CANCELED, S.ABORTED, S.COMPLETED])
def test_final_states_are_final_and_stamped(final: JobState) -> None:
    job = transition(make_job(state=S.PROCESSING), final, now=42.0)
    assert job.completed_at == 42.0 and job.state.is_final
    for other in S:
        assert not can_transition(final, other)


def test_processing_counts_attempts_and_clears_the_retry_time() -> None:
    job = make_job(S.PENDING, attempts=2, next_attempt_at=99.0)
    started = transition(job, S.PROCESSING, now=50.0)
    assert (started.attempts, started.processing_at, started.next_attempt_at) == (3, 50.0, None)
    assert started.reason == "job-printing"


def test_reason_and_message_given_or_defaulted() -> None:
    held = transition(make_job(state=S.PENDING), S.PENDING_HELD, now=1.0)
    assert held.reason == "job-hold-until-specified"
    canceled = transition(make_job(state=S.PENDING), S.CANCELED, now=1.0, reason="job-canceled-by-operator", message="x")
    assert (canceled.reason, canceled.message) == ("job-canceled-by-operator", "x")


@pytest.mark.parametrize(
    ("state", "becomes"),
    [(S.PROCESSING, S.PENDING), (S.PROCESSING_STOPPED, S.PENDING), (S.PENDING, None), (S.PENDING_HELD, None),
     (S.COMPLETED, None), (S.CANCELED, None), (S.ABORTED, None)],
)  # fmt: skip
def test_recovery_after_restart(state: JobState, becomes: JobState | None) -> None:
    recovered = recover_after_restart(make_job(state=state), now=3.0)
    assert (recovered.state if recovered else None) == becomes


def test_state_keywords_round_trip() -> None:
    for state in S:
        assert S.from_keyword(state.keyword) is state
    assert S.PENDING_HELD.keyword == "pending-held"
    with pytest.raises(ValueError):
        S.from_keyword("printing")
