"""The forms engine: loads the definitions, validates answer sets, scores the
instruments, evaluates the triage rules and runs a visit one question at a time.

Everything clinical lives in ``forms/definitions/*.toml``; this module only knows how to
read and apply it, and checks on load that the files agree with each other (every field
produced by a question or derivation, every condition naming known things, every
choice value allowed by the canonical schema).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from forms.conditions import Condition, ConditionError, compile_condition
from forms.model import (
    LEVELS,
    AnswerError,
    Choice,
    FiredRule,
    Kind,
    Level,
    Outcome,
    Question,
    Section,
    StartBackScore,
    Stop,
    Text,
)

DEFINITIONS = Path(__file__).with_name("definitions")
SECTION_FILES: tuple[tuple[Section, str], ...] = (
    ("eligibility", "eligibility.toml"),
    ("consent", "consent.toml"),
    ("screen", "screen.toml"),
    ("instrument", "instruments.toml"),
)
OTHER_FILES = ("fields.toml", "choices.toml", "rules.toml", "texts.toml")
FIELD_TYPES = ("integer", "number", "boolean", "choice", "startback", "sbi")
OBJECT_TYPES = ("startback", "sbi")
QUESTION_KINDS: tuple[Kind, ...] = ("choice", "integer", "number")
COMPUTED_NAMES = ("startback_risk", "min_self_consent_age")
# Wording used when kit.toml leaves a name empty, per language.
DEFAULT_CONTEXT: dict[str, dict[str, str]] = {
    "controller": {
        "en": "the organisers of this booth (ask to see their details)",
        "es": "los organizadores de este puesto (pida ver sus datos)",
    },
    "provider": {"en": "our tele-triage partner", "es": "nuestro socio de teletriaje"},
    "retention_days": {"en": "7"},
    "emergency_number": {"en": "999"},
    "booth_name": {"en": "this booth", "es": "este puesto"},
}
STARTBACK_BOTHERSOME = ("very_much", "extremely")


class DefinitionError(ValueError):
    """The definition files are inconsistent; the message names the file and entry."""


WEEKS_PER_YEAR = 52.18
AGE, ONSET, DURATION = "age_years", "back_pain_onset_age", "symptom_duration_weeks"


def check_plausible(answers: Mapping[str, Any], answering: str | None = None) -> None:
    """Refuse a history that cannot be: back pain that began after today's age, or
    symptoms lasting longer than the time since they began (age minus onset age plus one
    year, for birthdays). Raises :class:`AnswerError` naming ``answering`` when given
    (the field just typed), else the later field of the pair."""
    age, onset, weeks = answers.get(AGE), answers.get(ONSET), answers.get(DURATION)
    if age is None:
        return
    if onset is not None and onset > age:
        if answering == AGE:
            raise AnswerError(AGE, f"is less than the age when the back pain began ({onset})")
        raise AnswerError(ONSET, f"is more than the age now ({age}): give at most {age}")
    if weeks is None:
        return
    since = age - (onset if onset is not None else 0) + 1  # years, allowing for birthdays
    longest = math.floor(since * WEEKS_PER_YEAR)
    if weeks <= longest:
        return
    if answering == AGE:
        raise AnswerError(AGE, f"is too young for {_fmt_number(weeks)} weeks of symptoms")
    if answering == ONSET:
        latest = math.floor(age + 1 - weeks / WEEKS_PER_YEAR)
        raise AnswerError(
            ONSET,
            f"does not fit {_fmt_number(weeks)} weeks of symptoms at age {age}: "
            f"give at most {max(latest, 0)}",
        )
    began = f"since the pain began at {onset}" if onset is not None else "a lifetime"
    raise AnswerError(DURATION, f"is longer than {began}: give at most {longest} weeks")


class _Keep(dict[str, Any]):
    """format_map values that leave unknown placeholders as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(text: str, values: Mapping[str, Any]) -> str:
    return text.format_map(_Keep({k: str(v) for k, v in values.items()}))


class Placeholders:
    """Values for ``{name}`` in the definitions: thresholds and kit.toml names, with
    per-language wording where kit.toml leaves a name empty."""

    def __init__(self, given: Mapping[str, Any], thresholds: Mapping[str, int]) -> None:
        self.given = {k: str(v) for k, v in given.items() if v not in (None, "")}
        self.thresholds = dict(thresholds)

    def for_language(self, language: str) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: by_lang.get(language) or by_lang["en"]
            for name, by_lang in DEFAULT_CONTEXT.items()
        }
        values.update(self.given)
        values.update(self.thresholds)
        return values


def _fill_text(text: Text | None, values: Placeholders) -> Text | None:
    if text is None:
        return None
    return {lang: fill(value, values.for_language(lang)) for lang, value in text.items()}


def localized(text: Mapping[str, str] | None, language: str) -> str:
    """``text`` in ``language``, else English, else any."""
    if not text:
        return ""
    return text.get(language) or text.get("en") or next(iter(text.values()), "")


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field and what it allows."""

    name: str
    type: str
    values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    required_if: Condition | None = None
    keys: tuple[tuple[str, Question], ...] = ()  # object fields: (key, item question)

    def describe(self) -> str:
        if self.type == "boolean":
            return "true or false"
        if self.type == "choice":
            return "one of " + ", ".join(f'"{v}"' for v in self.values)
        if self.type in OBJECT_TYPES:
            return "an object with " + ", ".join(k for k, _ in self.keys) + ", or null"
        return describe_range(self.type, self.minimum, self.maximum)


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def describe_range(kind: str, lo: float | None, hi: float | None) -> str:
    """What a number question allows, in words: "a whole number from 0 to 120"."""
    what = "a whole number" if kind == "integer" else "a number"
    if lo is not None and hi is not None:
        return f"{what} from {_fmt_number(lo)} to {_fmt_number(hi)}"
    if lo is not None:
        return f"{what} of at least {_fmt_number(lo)}"
    return what


def check_number(
    name: str, kind: str, value: Any, lo: float | None, hi: float | None
) -> int | float:
    """``value`` as a whole number (or number), in range; whole floats become ints."""
    allowed = describe_range(kind, lo, hi)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerError(name, f"must be {allowed}, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnswerError(name, f"must be {allowed}, got {value!r}")
        if value.is_integer():
            value = int(value)
        elif kind == "integer":
            raise AnswerError(name, f"must be {allowed}, got {value!r}")
    number: int | float = value
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise AnswerError(name, f"must be {allowed}, got {_fmt_number(number)}")
    return number


def check_choice(name: str, question: Question, value: Any) -> Any:
    for choice in question.choices:
        if choice.value == value and type(choice.value) is type(value):
            return choice.value
    allowed = ", ".join(_json_literal(c.value) for c in question.choices)
    raise AnswerError(name, f"must be one of {allowed}, got {_json_literal(value)}")


def _json_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def check_answer(question: Question, value: Any) -> Any:
    """The value as stored for ``question``, or :class:`AnswerError`."""
    if question.kind == "choice":
        return check_choice(question.id, question, value)
    return check_number(question.id, question.kind, value, question.minimum, question.maximum)


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    when: Condition
    reason: Text
    source: str

    def fired(self) -> FiredRule:
        return FiredRule(self.id, self.level, self.reason, self.source)


@dataclass(frozen=True)
class Derivation:
    field: str
    source_question: str
    cases: tuple[tuple[Condition, Any], ...]

    def value(self, env: Mapping[str, Any]) -> Any:
        for condition, value in self.cases:
            result = condition.evaluate(env)
            if result is True:
                return value
            if result is None:
                return None  # an earlier case is still open: not known yet
        return None


@dataclass(frozen=True)
class ObjectField:
    field: str
    keys: tuple[tuple[str, str], ...]  # (object key, question id)

    def value(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        out = {key: env.get(qid) for key, qid in self.keys}
        return None if any(v is None for v in out.values()) else out


@dataclass(frozen=True)
class ConsentDocument:
    """The consent text exactly as shown, its version and hash."""

    version: str
    language: str
    text: str
    sha256: str
    items: dict[str, str]  # item id -> short wording
    scopes: dict[str, str]


def score_startback(answers: Mapping[str, Any]) -> StartBackScore:
    """Keele STarT Back (clinical reference 2.1): total 0-9, psychosocial (items 5-9) 0-5."""
    items = [1 if answers[f"sb{i}"] is True else 0 for i in range(1, 9)]
    item9 = 1 if answers["sb9"] in STARTBACK_BOTHERSOME else 0
    total = sum(items) + item9
    psychosocial = sum(items[4:8]) + item9
    if total <= 3:
        risk = "low"
    elif psychosocial <= 3:
        risk = "medium"
    else:
        risk = "high"
    return StartBackScore(total=total, psychosocial=psychosocial, risk=risk)  # type: ignore[arg-type]


def sbi_total(answers: Mapping[str, Any]) -> int:
    return sum(int(v) for v in answers.values())


def _most_severe(rules: Iterable[Rule | FiredRule]) -> Level:
    levels = {r.level for r in rules}
    return next((level for level in LEVELS if level in levels), "self_care")


@dataclass
class Forms:
    """The loaded definitions for one kit (its thresholds, age limit and wording)."""

    questions: tuple[Question, ...]
    fields: dict[str, FieldSpec]
    rules: tuple[Rule, ...]
    thresholds: dict[str, int]
    default_thresholds: dict[str, int]
    ruleset_version: str
    forms_version: str
    min_self_consent_age: int
    ask_if: dict[str, Condition]
    defaults: dict[str, Any]
    derivations: tuple[Derivation, ...]
    objects: tuple[ObjectField, ...]
    stops: tuple[tuple[Stop, Condition], ...]
    consent_items: tuple[str, ...]
    consent_required: frozenset[str]
    consent_scopes: dict[str, str]
    consent_version: str
    consent_info: Text
    consent_short: dict[str, Text]
    context: dict[str, str]
    value_labels: dict[str, Text]
    attributions: dict[str, Text]
    languages: dict[str, str]
    by_id: dict[str, Question] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {q.id: q for q in self.questions}

    # --- lookup ----------------------------------------------------------------------

    def question(self, question_id: str) -> Question | None:
        return self.by_id.get(question_id)

    def field_question(self, name: str) -> Question | None:
        """A question to show or correct canonical field ``name`` (derived ones included)."""
        spec = self.fields.get(name)
        asked = self.by_id.get(name)
        if asked is not None:
            return asked
        if spec is None or spec.type in OBJECT_TYPES:
            return None
        source = next((d.source_question for d in self.derivations if d.field == name), None)
        base = self.by_id.get(source) if source else None
        prompt = base.prompt if base else {"en": name}
        if spec.type == "choice":
            choices = tuple(
                Choice(value, str(i + 1), self.value_labels.get(value, {"en": value}))
                for i, value in enumerate(spec.values)
            )
            return Question(name, "screen", "choice", prompt, None, choices)
        if spec.type == "boolean":
            yes_no = self.by_id["foot_drop"].choices if "foot_drop" in self.by_id else ()
            return Question(name, "screen", "choice", prompt, None, yes_no)
        kind: Kind = "integer" if spec.type == "integer" else "number"
        return Question(name, "screen", kind, prompt, None, (), spec.minimum, spec.maximum)

    # --- evaluation ------------------------------------------------------------------

    def base_env(self) -> dict[str, Any]:
        env: dict[str, Any] = dict(self.thresholds)
        env["min_self_consent_age"] = self.min_self_consent_age
        return env

    def complete_env(self, env: dict[str, Any]) -> dict[str, Any]:
        """Add derived fields, instrument objects and computed names to ``env``."""
        for derivation in self.derivations:
            value = derivation.value(env)
            if value is not None:
                env[derivation.field] = value
        for obj in self.objects:
            value = obj.value(env)
            if value is not None:
                env[obj.field] = value
        startback = env.get("startback")
        env["startback_risk"] = score_startback(startback).risk if startback else None
        return env

    def stop_of(self, env: Mapping[str, Any]) -> Stop | None:
        for kind, condition in self.stops:
            if condition.holds(env):
                return kind
        if any(r.level == "emergency" and r.when.holds(env) for r in self.rules):
            return "emergency"
        return None

    def outcome_of(self, env: dict[str, Any]) -> Outcome:
        """The outcome of the answers in ``env`` (a completed environment)."""
        if any(kind == "ineligible" and c.holds(env) for kind, c in self.stops):
            return Outcome("ineligible", (), self.ruleset_version)
        emergency = [r for r in self.rules if r.level == "emergency" and r.when.holds(env)]
        if emergency:
            # The instruments are skipped after an emergency: they take no part.
            env = {k: v for k, v in env.items() if k not in ("startback", "sbi")}
            env["startback_risk"] = None
        fired = tuple(r.fired() for r in self.rules if r.when.holds(env))
        level = _most_severe(fired)
        startback = env.get("startback")
        sbi = env.get("sbi")
        return Outcome(
            triage=level,
            rules=fired,
            ruleset_version=self.ruleset_version,
            startback=score_startback(startback) if startback else None,
            sbi_total=sbi_total(sbi) if sbi else None,
        )

    def evaluate(self, answers: Mapping[str, Any]) -> Outcome:
        """The outcome of a canonical answer set (as :meth:`validate` returns it)."""
        env = self.base_env()
        env.update(answers)
        return self.outcome_of(self.complete_env(env))

    def validate(self, raw: Any) -> dict[str, Any]:
        """A canonical answer set checked against fields.toml; :class:`AnswerError` names
        the first field that is unknown, missing or out of range, and what is allowed.

        Fields after an emergency (the screen stops there) and below the age limit (no
        screening) may be missing, exactly as in a visit.
        """
        if not isinstance(raw, Mapping):
            raise AnswerError("answers", "must be a JSON object keyed by field name")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            spec = self.fields.get(key)
            if spec is None:
                raise AnswerError(str(key), self._unknown(str(key)))
            if value is None:
                continue
            out[key] = self._check_field(spec, value)
        env = self.complete_env({**self.base_env(), **out})
        stop = self.stop_of(env)
        if stop != "ineligible":  # below the age limit nothing else is screened
            check_plausible(out)
        if stop in ("ineligible", "emergency"):
            return out
        for name, spec in self.fields.items():
            if name in out:
                continue
            if not spec.optional:
                raise AnswerError(name, f"is missing: give {spec.describe()}")
            if spec.required_if is not None and spec.required_if.evaluate(env) is not False:
                raise AnswerError(
                    name, f"is required when {spec.required_if.source}: give {spec.describe()}"
                )
        return out

    def screen(self, raw: Any) -> Outcome:
        return self.evaluate(self.validate(raw))

    def _unknown(self, key: str) -> str:
        names = list(self.fields)
        close = [n for n in names if n.startswith(key) or key.startswith(n)]
        close += difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        if close:
            return f'is not a screening field; did you mean "{close[0]}"?'
        return f"is not a screening field (fields: {', '.join(names)})"

    def _check_field(self, spec: FieldSpec, value: Any) -> Any:
        name = spec.name
        if spec.type == "boolean":
            if not isinstance(value, bool):
                raise AnswerError(name, f"must be true or false, got {_json_literal(value)}")
            return value
        if spec.type == "choice":
            if not isinstance(value, str) or value not in spec.values:
                raise AnswerError(name, f"must be {spec.describe()}, got {_json_literal(value)}")
            return value
        if spec.type in OBJECT_TYPES:
            if not isinstance(value, Mapping):
                raise AnswerError(name, f"must be {spec.describe()}")
            keys = dict(spec.keys)
            for key in value:
                if key not in keys:
                    raise AnswerError(f"{name}.{key}", f"is not one of {', '.join(keys)}")
            checked: dict[str, Any] = {}
            for key, question in spec.keys:
                if value.get(key) is None:
                    raise AnswerError(f"{name}.{key}", "is missing")
                try:
                    checked[key] = check_answer(question, value[key])
                except AnswerError as exc:
                    raise AnswerError(f"{name}.{key}", exc.message) from None
            return checked
        return check_number(name, spec.type, value, spec.minimum, spec.maximum)

    # --- consent ---------------------------------------------------------------------

    def consent_document(self, language: str) -> ConsentDocument:
        """The information and the five items, in ``language``, as shown and hashed."""
        parts = [self.consent_information(language)]
        for cid in self.consent_items:
            question = self.by_id[cid]
            parts.append(localized(question.prompt, language))
        text = "\n\n".join(parts) + "\n"
        return ConsentDocument(
            version=self.consent_version,
            language=language,
            text=text,
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            items={cid: localized(self.consent_short[cid], language) for cid in self.consent_items},
            scopes=dict(self.consent_scopes),
        )

    def consent_information(self, language: str) -> str:
        """The information read aloud before the consent items."""
        return localized(self.consent_info, language).strip()


# --- loading -----------------------------------------------------------------------


def _read(directory: Path, name: str, seen: dict[str, bytes]) -> dict[str, Any]:
    path = directory / name
    try:
        data = path.read_bytes()
        seen[name] = data
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise DefinitionError(f"{path} is missing") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path} is not valid TOML: {exc}") from None


def _text(value: Any, where: str) -> Text:
    if not isinstance(value, dict) or not value or "en" not in value:
        raise DefinitionError(f"{where}: a text needs at least an English version (en = ...)")
    return {str(k): str(v) for k, v in value.items()}


def _choices(sets: Mapping[str, Any], name: str, where: str) -> tuple[Choice, ...]:
    raw = sets.get(name)
    if not raw:
        raise DefinitionError(f"{where}: unknown answer set {name!r} (choices.toml)")
    choices = tuple(
        Choice(item["value"], str(item["key"]), _text(item["label"], f"{where} {name}"))
        for item in raw
    )
    keys = [c.key for c in choices]
    if len(set(keys)) != len(keys) or any(len(k) != 1 for k in keys):
        raise DefinitionError(f"choices.toml {name}: keys must be single, distinct characters")
    return choices


def load_forms(
    thresholds: Mapping[str, int] | None = None,
    min_self_consent_age: int = 16,
    context: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> Forms:
    """Read and cross-check the definitions. ``thresholds`` overrides rules.toml's
    (from kit.toml); ``context`` fills the consent wording (provider, controller...)."""
    directory = directory or DEFINITIONS
    raw_files: dict[str, bytes] = {}
    fields_doc = _read(directory, "fields.toml", raw_files)
    choices_doc = _read(directory, "choices.toml", raw_files)
    rules_doc = _read(directory, "rules.toml", raw_files)
    texts_doc = _read(directory, "texts.toml", raw_files)
    section_docs: dict[str, dict[str, Any]] = {
        section: _read(directory, name, raw_files) for section, name in SECTION_FILES
    }

    defaults = {str(k): int(v) for k, v in rules_doc.get("thresholds", {}).items()}
    chosen = dict(defaults)
    for key, value in (thresholds or {}).items():
        if key not in defaults:
            raise DefinitionError(
                f"unknown threshold {key!r} in kit.toml [thresholds]; known: {', '.join(defaults)}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DefinitionError(f"threshold {key} must be a whole number >= 0, got {value!r}")
        chosen[key] = value
    overrides = [f"{k}={chosen[k]}" for k in sorted(chosen) if chosen[k] != defaults[k]]
    ruleset_version = str(rules_doc["version"]) + ("+" + ",".join(overrides) if overrides else "")
    digest = hashlib.sha256()
    for name, data in sorted(raw_files.items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    forms_version = digest.hexdigest()[:12]

    placeholders = Placeholders(context or {}, chosen)

    sets = choices_doc.get("sets", {})
    questions: list[Question] = []
    ask_if_text: dict[str, str] = {}
    default_values: dict[str, Any] = {}
    consent_items: list[str] = []
    consent_required: set[str] = set()
    consent_scopes: dict[str, str] = {}
    consent_short: dict[str, Text] = {}
    stops_text: list[tuple[str, str]] = []
    attributions_raw: dict[str, Any] = {}
    for doc in section_docs.values():
        attributions_raw.update(doc.get("attributions", {}))
    for section, name in SECTION_FILES:
        doc = section_docs[section]
        for kind, text in doc.get("stop", {}).items():
            stops_text.append((kind, text))
        for item in doc.get("questions", []):
            where = f"{name} question {item.get('id')!r}"
            qid = str(item["id"])
            kind = item.get("kind")
            if kind not in QUESTION_KINDS:
                raise DefinitionError(f"{where}: kind must be one of {', '.join(QUESTION_KINDS)}")
            choices = _choices(sets, item["choices"], where) if kind == "choice" else ()
            question = Question(
                id=qid,
                section=section,
                kind=kind,
                prompt=_fill_text(_text(item["prompt"], where), placeholders) or {},
                volunteer_prompt=_fill_text(
                    _text(item["volunteer"], where) if "volunteer" in item else None, placeholders
                ),
                choices=choices,
                minimum=item.get("min"),
                maximum=item.get("max"),
                ask_if=item.get("ask_if"),
                attribution=None,
            )
            if "attribution" in item:
                attribution = attributions_raw.get(item["attribution"])
                question = replace(question, attribution=_text(attribution, where))
            if qid in {q.id for q in questions}:
                raise DefinitionError(f"{where}: the id is used twice")
            questions.append(question)
            if "ask_if" in item:
                ask_if_text[qid] = item["ask_if"]
            if "default" in item:
                default_values[qid] = item["default"]
            if section == "consent":
                consent_items.append(qid)
                consent_scopes[qid] = str(item.get("scope", "patient-privacy"))
                consent_short[qid] = _fill_text(_text(item["short"], where), placeholders) or {}
                if item.get("required"):
                    consent_required.add(qid)

    by_id = {q.id: q for q in questions}
    threshold_names = set(chosen)

    # canonical fields
    object_docs = section_docs["instrument"].get("objects", [])
    object_keys = {
        str(o["field"]): tuple((str(k), str(v)) for k, v in o["keys"].items()) for o in object_docs
    }
    field_names = list(fields_doc.get("fields", {}))
    known = set(field_names) | set(by_id) | threshold_names | set(COMPUTED_NAMES)

    def cond(text: str, where: str) -> Condition:
        try:
            return compile_condition(text, known)
        except ConditionError as exc:
            raise DefinitionError(f"{where}: {exc}") from None

    fields: dict[str, FieldSpec] = {}
    for fname, spec in fields_doc["fields"].items():
        where = f"fields.toml {fname}"
        ftype = spec.get("type")
        if ftype not in FIELD_TYPES:
            raise DefinitionError(f"{where}: type must be one of {', '.join(FIELD_TYPES)}")
        keys: tuple[tuple[str, Question], ...] = ()
        if ftype in OBJECT_TYPES:
            if fname not in object_keys:
                raise DefinitionError(f"{where}: no [[objects]] entry in instruments.toml")
            keys = tuple((k, by_id[qid]) for k, qid in object_keys[fname])
        fields[fname] = FieldSpec(
            name=fname,
            type=ftype,
            values=tuple(spec.get("values", ())),
            minimum=spec.get("min"),
            maximum=spec.get("max"),
            optional=bool(spec.get("optional", False)),
            required_if=cond(spec["required_if"], where) if "required_if" in spec else None,
            keys=keys,
        )

    derivations: list[Derivation] = []
    for item in section_docs["screen"].get("derive", []):
        where = f"screen.toml derive {item.get('field')!r}"
        compiled = tuple((cond(c["when"], where), c["value"]) for c in item["cases"])
        helpers = sorted({n for c, _ in compiled for n in c.names if n.startswith("_")})
        first = next(
            (q.id for q in questions if q.id in {n for c, _ in compiled for n in c.names}),
            helpers[0] if helpers else "",
        )
        derivations.append(Derivation(str(item["field"]), first, compiled))
    objects = tuple(ObjectField(f, keys) for f, keys in object_keys.items())

    ask_if = {qid: cond(text, f"ask_if of {qid}") for qid, text in ask_if_text.items()}
    stops = tuple((cast(Stop, kind), cond(text, f"stop {kind}")) for kind, text in stops_text)

    rules: list[Rule] = []
    for item in rules_doc.get("rules", []):
        where = f"rules.toml {item.get('id')!r}"
        level = item.get("level")
        if level not in LEVELS or level == "self_care":
            raise DefinitionError(f"{where}: level must be emergency, urgent or routine")
        rules.append(
            Rule(
                id=str(item["id"]),
                level=level,
                when=cond(item["when"], where),
                reason=_fill_text(_text(item["reason"], where), placeholders) or {},
                source=str(item.get("source", "")),
            )
        )
    if len({r.id for r in rules}) != len(rules):
        raise DefinitionError("rules.toml: a rule id is used twice")

    forms = Forms(
        questions=tuple(questions),
        fields=fields,
        rules=tuple(rules),
        thresholds=chosen,
        default_thresholds=defaults,
        ruleset_version=ruleset_version,
        forms_version=forms_version,
        min_self_consent_age=min_self_consent_age,
        ask_if=ask_if,
        defaults=default_values,
        derivations=tuple(derivations),
        objects=objects,
        stops=stops,
        consent_items=tuple(consent_items),
        consent_required=frozenset(consent_required),
        consent_scopes=consent_scopes,
        consent_version=str(section_docs["consent"]["version"]),
        consent_info=_fill_text(
            _text(section_docs["consent"]["information"], "consent.toml information"),
            placeholders,
        )
        or {},
        consent_short=consent_short,
        context=placeholders.for_language("en"),
        value_labels={
            str(k): _fill_text(_text(v, f"choices.toml value_labels {k}"), placeholders) or {}
            for k, v in choices_doc.get("value_labels", {}).items()
        },
        attributions={str(k): _text(v, "attributions") for k, v in attributions_raw.items()},
        languages={str(k): str(v) for k, v in texts_doc.get("languages", {}).items()},
    )
    _cross_check(forms)
    return forms


def _cross_check(forms: Forms) -> None:
    """The files agree: every field is produced, every choice value is allowed, every
    skip condition looks only backwards, and nothing is asked twice."""
    produced: dict[str, str] = {}
    for q in forms.questions:
        if q.id in forms.fields:
            produced[q.id] = "question"
    for d in forms.derivations:
        if d.field not in forms.fields:
            raise DefinitionError(f"screen.toml derive: {d.field!r} is not in fields.toml")
        produced[d.field] = "derivation"
        spec = forms.fields[d.field]
        for _, value in d.cases:
            if spec.type == "choice" and value not in spec.values:
                raise DefinitionError(f"derive {d.field}: {value!r} is not allowed by fields.toml")
    for obj in forms.objects:
        produced[obj.field] = "object"
    missing = [f for f in forms.fields if f not in produced]
    if missing:
        raise DefinitionError(f"no question or derivation gives field(s): {', '.join(missing)}")
    order = {q.id: i for i, q in enumerate(forms.questions)}
    derived = {d.field for d in forms.derivations} | {o.field for o in forms.objects}
    for qid, condition in forms.ask_if.items():
        for name in condition.names:
            if name in derived:
                raise DefinitionError(f"ask_if of {qid}: use the questions behind {name}")
            if name in order and order[name] >= order[qid]:
                raise DefinitionError(f"ask_if of {qid}: {name} is asked later")
    for q in forms.questions:
        asked_spec = forms.fields.get(q.id)
        if asked_spec is None:
            continue
        spec = asked_spec
        if spec.type == "choice":
            bad = [c.value for c in q.choices if c.value not in spec.values]
            if bad:
                raise DefinitionError(f"question {q.id}: values {bad} not in fields.toml")
        if spec.type == "boolean" and {c.value for c in q.choices} != {True, False}:
            raise DefinitionError(f"question {q.id}: a boolean field needs yes/no choices")
    if "c1" not in forms.consent_required:
        raise DefinitionError("consent.toml: c1 must be required")


# --- the visit flow -------------------------------------------------------------------


@dataclass(frozen=True)
class _Walk:
    env: dict[str, Any]
    applicable: tuple[Question, ...]
    open: Question | None
    stopped: Stop | None


class Flow:
    """A visit in progress: one question at a time, in the definitions' order.

    Answers are kept by question id. Going back (or revisiting a question from the review)
    takes an answer out and remembers it, so the screen can show it as the current pick;
    answers to questions that skip logic later rules out are kept but take no part.
    """

    STATE_VERSION = 1

    def __init__(self, forms: Forms, language: str, state: Mapping[str, Any] | None = None) -> None:
        self.forms = forms
        self.language = language
        self._answers: dict[str, Any] = {}
        self._previous: dict[str, Any] = {}
        self._walk_cache: _Walk | None = None
        if state:
            for key, target in (("answers", self._answers), ("previous", self._previous)):
                for qid, value in dict(state.get(key, {})).items():
                    question = forms.question(qid)
                    if question is None:
                        continue  # a question dropped by a newer forms version
                    try:
                        target[qid] = check_answer(question, value)
                    except AnswerError:
                        continue

    # --- state -----------------------------------------------------------------------

    def _walk(self) -> _Walk:
        if self._walk_cache is not None:
            return self._walk_cache
        forms = self.forms
        env = forms.base_env()
        applicable: list[Question] = []
        first_open: Question | None = None
        for q in forms.questions:
            condition = forms.ask_if.get(q.id)
            ask = True if condition is None else condition.evaluate(env)
            if ask is False:
                if q.id in forms.defaults:
                    env[q.id] = forms.defaults[q.id]
                continue
            if ask is None and first_open is not None:
                continue
            applicable.append(q)
            if q.id in self._answers:
                env[q.id] = self._answers[q.id]
            elif first_open is None:
                first_open = q
        forms.complete_env(env)
        walk = _Walk(env, tuple(applicable), first_open, forms.stop_of(env))
        self._walk_cache = walk
        return walk

    def _changed(self) -> None:
        self._walk_cache = None

    def to_state(self) -> dict[str, Any]:
        return {
            "v": self.STATE_VERSION,
            "answers": dict(self._answers),
            "previous": dict(self._previous),
        }

    # --- where we are ----------------------------------------------------------------

    @property
    def stopped(self) -> Stop | None:
        return self._walk().stopped

    def current(self) -> Question | None:
        walk = self._walk()
        return None if walk.stopped else walk.open

    @property
    def finished(self) -> bool:
        walk = self._walk()
        return walk.stopped is None and walk.open is None

    def progress(self) -> tuple[int, int]:
        """(questions answered, questions to ask as far as known now)."""
        walk = self._walk()
        answered = sum(1 for q in walk.applicable if q.id in self._answers)
        return answered, len(walk.applicable)

    def section_progress(self, section: Section) -> tuple[int, int]:
        walk = self._walk()
        inside = [q for q in walk.applicable if q.section == section]
        return sum(1 for q in inside if q.id in self._answers), len(inside)

    def shown_answer(self, question_id: str) -> Any:
        """The answer to show as picked for a question: given, or given before going back."""
        if question_id in self._answers:
            return self._answers[question_id]
        return self._previous.get(question_id)

    # --- moving ----------------------------------------------------------------------

    def answer(self, value: Any) -> None:
        question = self.current()
        if question is None:
            raise AnswerError("visit", "there is no question to answer")
        checked = check_answer(question, value)
        env = self._walk().env
        given = {name: env.get(name) for name in (AGE, ONSET, DURATION)}
        given.update({k: v for k, v in self._answers.items() if k in given})
        if question.id in given:
            check_plausible({**given, question.id: checked}, answering=question.id)
        self._answers[question.id] = checked
        self._previous.pop(question.id, None)
        self._changed()

    def back(self) -> bool:
        """Take back the last answer before the current question; False at the start."""
        walk = self._walk()
        answered = [q for q in walk.applicable if q.id in self._answers]
        if walk.open is not None and walk.stopped is None:
            position = walk.applicable.index(walk.open)
            answered = [q for q in walk.applicable[:position] if q.id in self._answers]
        if not answered:
            return False
        target = answered[-1]
        self._previous[target.id] = self._answers.pop(target.id)
        self._changed()
        return True

    def revisit(self, question_id: str) -> bool:
        """Open an answered question again (from the review); False if not answered."""
        if question_id not in self._answers:
            return False
        self._previous[question_id] = self._answers.pop(question_id)
        self._changed()
        return True

    # --- results ---------------------------------------------------------------------

    def answered(self) -> list[tuple[Question, Any]]:
        walk = self._walk()
        return [(q, self._answers[q.id]) for q in walk.applicable if q.id in self._answers]

    def consent(self) -> dict[str, bool]:
        return {cid: self._answers.get(cid) is True for cid in self.forms.consent_items}

    def canonical_answers(self) -> dict[str, Any]:
        """The answers by the canonical field names, as stored and sent."""
        env = self._walk().env
        return {name: env[name] for name in self.forms.fields if env.get(name) is not None}

    def outcome(self) -> Outcome:
        walk = self._walk()
        return self.forms.outcome_of(dict(walk.env))
