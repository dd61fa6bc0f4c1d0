"""Sample printouts for the slips bench and for looking at them (``_slips_preview.py``).

Realistic content: the longest forms advice (urgent), real rule reasons, a full consent
record. Nothing here is a real person's data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from printouts.codes import new_referral_code
from printouts.payload import KitKey, new_kit_key, slip_url
from printouts.render import DaySummaryData, SlipData

BASE_URL = "https://triage.example.org"
CES_REASON = (
    "New or worsening numbness around the bottom or genitals, or a change in bladder or "
    "bowel: possible pressure on the nerves to the bladder and bowel (cauda equina syndrome)"
)


def kit_key() -> KitKey:
    return new_kit_key("kit-bench")


def referral(key: KitKey, level: str = "urgent", **over: object) -> SlipData:
    code = new_referral_code()
    data = SlipData(
        code=code,
        url=slip_url(BASE_URL, code, key),
        level=level,
        language="en",
        booth_name="Night market booth",
        event="Late market, Riverside",
        visit_date=dt.date(2026, 11, 22),
        reasons=["Constant pain that wakes you at night, over the age of 50"],
        rule_ids=["UR10"],
        emergency_number="999",
        consent={"c1": True, "c2": True, "c3": False, "c4": True, "c5": False},
        consent_context={"provider": "Riverside Tele-Triage", "controller": "Riverside Health"},
        ruleset_version="2026.11-1",
        consent_version="2026.11-1",
    )
    return dataclasses.replace(data, **over)  # type: ignore[arg-type]


def emergency(key: KitKey, **over: object) -> SlipData:
    fields: dict[str, object] = {
        "reasons": [
            CES_REASON,
            "A history of cancer with leg weakness or nerve symptoms: possible pressure on "
            "the spinal cord from cancer (metastatic spinal cord compression)",
        ],
        "rule_ids": ["EM1", "EM4"],
    }
    fields.update(over)
    return referral(key, "emergency", **fields)


def day_summary(**over: object) -> DaySummaryData:
    data = DaySummaryData(
        booth_name="Night market booth",
        event="Late market, Riverside",
        day=dt.date(2026, 11, 22),
        counts_by_outcome={
            "emergency": 1,
            "urgent": 3,
            "routine": 10,
            "self_care": 6,
            "ineligible": 2,
            "consent_refused": 1,
        },
        consent_granted={"c1": 20, "c2": 15, "c3": 9, "c4": 12, "c5": 4},
        visits=20,
        consent_asked=21,
        unsent=4,
        oldest_unsent=dt.datetime(2026, 11, 22, 18, 5, tzinfo=dt.UTC),
        kit_id="kit-3f9a2c71b0d4",
        set_aside=1,
        unsent_codes=[new_referral_code() for _ in range(4)],
        emergency_number="999",
    )
    return dataclasses.replace(data, **over)  # type: ignore[arg-type]


def photo_of(
    page: object, *, angle: float = -5.0, blur: float = 1.8, contrast: float = 0.3
) -> object:
    """A phone-photo-like image of a rendered page: tilted, faded, soft and noisy; the
    same image every run."""
    import random

    from PIL import Image, ImageEnhance, ImageFilter

    img = ImageEnhance.Contrast(page.convert("L")).enhance(contrast)  # type: ignore[attr-defined]
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=90)
    img = img.filter(ImageFilter.GaussianBlur(blur))
    noise = Image.frombytes("L", img.size, random.Random(7).randbytes(img.width * img.height))
    return Image.blend(img, noise.point(lambda v: 128 + (v - 128) * 30 // 74), 0.12)
