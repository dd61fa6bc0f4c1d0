"""One definition of "unsent": the booth's line (``VisitService.unsent``), the outbox's
status (``outbox_status``, the report and ``popup-kit sync``) and the run's totals read
the same rows the same way, state by state."""

from __future__ import annotations

from sqlalchemy import text

from popup_kit.services import VisitService
from sync.client import outbox_status
from sync.outbox import UNSENT_STATES, Outbox, parse_time
from tests.kit.conftest import visit_input, with_contact


def _seed(service: VisitService) -> dict[str, str]:
    """Six visits (a visit record and a consent record each), one per outbox state."""
    states = ["pending", "retrying", "sent", "set_aside", "confirmed", "cleared"]
    visits = {
        state: service.record_visit(with_contact() if i % 2 else visit_input()).visit_id
        for i, state in enumerate(states)
    }
    moves = {
        "retrying": (
            "UPDATE outbox SET last_error = 'could not connect to the server', "
            "next_attempt_at = '2026-11-22T19:00:00.000000Z' WHERE visit_id = :v"
        ),
        "sent": "UPDATE outbox SET state = 'sent', sent_at = created_at WHERE visit_id = :v",
        "set_aside": (
            "UPDATE outbox SET state = 'set_aside', last_error = 'conflict: other content' "
            "WHERE visit_id = :v"
        ),
        "confirmed": (
            "UPDATE outbox SET state = 'confirmed', confirmed_at = '2026-11-22T19:10:00.000000Z', "
            "receipt = '{}' WHERE visit_id = :v"
        ),
        "cleared": (
            "UPDATE outbox SET state = 'confirmed', confirmed_at = '2026-11-22T19:20:00.000000Z', "
            "receipt = '{}', payload = '{}' WHERE visit_id = :v"
        ),
    }
    with service.store.engine.begin() as conn:
        for state, sql in moves.items():
            conn.execute(text(sql), {"v": visits[state]})
    return visits


def test_unsent_is_pending_and_sent_only() -> None:
    assert UNSENT_STATES == ("pending", "sent")


def test_every_view_of_the_outbox_agrees_state_by_state(service: VisitService) -> None:
    visits = _seed(service)
    engine = service.store.engine
    with engine.connect() as conn:
        oldest = conn.execute(
            text("SELECT MIN(created_at) FROM outbox WHERE visit_id = :v"),
            {"v": visits["pending"]},
        ).scalar_one()

    booth = service.unsent()
    status = outbox_status(engine)

    # pending, retrying and sent: three visits, two records each
    assert booth.count == status.queued == 6
    assert booth.visits == status.unsent_visits == 3
    assert status.awaiting_answer == 2
    assert booth.set_aside == status.set_aside == 2
    assert status.confirmed == 4  # a cleared payload is still confirmed, never unsent
    assert booth.oldest == status.oldest_unsent_at == parse_time(oldest)
    assert status.next_attempt_at == parse_time("2026-11-22T19:00:00.000000Z")
    assert status.last_confirmed_at == parse_time("2026-11-22T19:20:00.000000Z")
    # why the unsent wait; the booth also names the latest set-aside reason
    assert status.last_error == "could not connect to the server"
    assert booth.last_error == status.last_problem == "conflict: other content"
    # the run's end-of-run totals
    assert Outbox(engine).totals() == (6, 2)
    assert Outbox(engine).count_unsent() == 6
    assert not status.all_confirmed


def test_all_confirmed_views_agree(service: VisitService) -> None:
    visit_id = service.record_visit(visit_input()).visit_id
    engine = service.store.engine
    assert service.unsent().count == outbox_status(engine).queued == 2
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET state = 'confirmed', confirmed_at = created_at, "
                "payload = '{}' WHERE visit_id = :v"
            ),
            {"v": visit_id},
        )
    booth, status = service.unsent(), outbox_status(engine)
    assert booth.count == status.queued == 0
    assert booth.visits == status.unsent_visits == 0
    assert booth.oldest is None and status.oldest_unsent_at is None
    assert booth.last_error is None and status.last_error is None
    assert status.all_confirmed
    assert Outbox(engine).totals() == (0, 0)
