"""The forms as this kit's configuration sets them up (no store needed)."""

from __future__ import annotations

from forms import Forms, load_forms
from popup_kit.config import KitConfig


def kit_forms(config: KitConfig) -> Forms:
    """The forms with this kit's thresholds, age limit and consent wording."""
    return load_forms(
        thresholds=config.thresholds,
        min_self_consent_age=config.min_self_consent_age,
        context=config.consent_context(),
    )
