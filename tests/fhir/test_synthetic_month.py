"""Done-when of the FHIR export: a reduced synthetic month (bench/synthetic_month.py, built
through the real ingest, event log and follow-up tables on SQLite) exports with every
line of every file valid against the HL7 R4 schema."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench.synthetic_month import build
from sync.server.export import export_fhir
from sync.server.fhir import RESOURCE_TYPES
from tests.fhir.test_export import validator
from tests.sync.clinic_support import run_clinic


@pytest.mark.slow
def test_a_reduced_synthetic_month_exports_without_one_schema_error(tmp_path: Path) -> None:
    with run_clinic(f"sqlite:///{tmp_path / 'month.sqlite3'}") as clinic:
        counts = build(clinic, 0.1, random.Random(11))
        written = export_fhir(clinic.live.store.engine, tmp_path / "export")
    files = sorted((tmp_path / "export").glob("*.ndjson"))
    assert [p.stem for p in files] == sorted(RESOURCE_TYPES)
    lines, errors = 0, []
    for path in files:
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            resource = json.loads(line)
            assert resource["resourceType"] == path.stem
            errors += [(path.stem, n, e.message) for e in validator().iter_errors(resource)]
            lines += 1
    assert errors == []
    assert lines == sum(written.values())
    # the month's work is in it: a Task on each referral's request, escalations, follow-ups
    assert written["Patient"] == counts["visits"] - counts["C2 refused"] > 100
    resources = {
        kind: [json.loads(line) for line in (tmp_path / "export" / f"{kind}.ndjson").open()]
        for kind in ("Task", "ServiceRequest")
    }
    referrals = {f"ServiceRequest/{r['id']}" for r in resources["ServiceRequest"]}
    focus = [t["focus"]["reference"] for t in resources["Task"] if "focus" in t]
    assert sorted(focus) == sorted(r for r in referrals if r.endswith("-referral"))
    assert written["Patient"] > written["Task"] > len(focus)  # self-care call-backs too
    requests = (tmp_path / "export" / "ServiceRequest.ndjson").read_text("utf-8")
    assert requests.count('"escalation-') > 0
    followups = (tmp_path / "export" / "QuestionnaireResponse.ndjson").read_text("utf-8")
    assert followups.count("/followup-w2") == counts["w2 responses"] > 0
    # routine referrals booked from their slips: one booked Appointment each
    appointments = [
        json.loads(line) for line in (tmp_path / "export" / "Appointment.ndjson").open()
    ]
    booked = [a for a in appointments if a["status"] == "booked"]
    assert len(booked) == counts["bookings"] > 0
