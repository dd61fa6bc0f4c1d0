"""The condition language: only what it allows, in three values, never eval."""

from __future__ import annotations

import pytest

from forms.conditions import ConditionError, compile_condition


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "age_years.real > 3",
        "fields[0]",
        "lambda: 1",
        "age_years if x else y",
        "1 < age_years < 3",
        "x in y",
        "[a for a in b]",
        "x == None",
    ],
)
def test_anything_outside_the_language_is_refused(text: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(text)


def test_unknown_names_are_refused_with_the_name() -> None:
    with pytest.raises(ConditionError, match="agee"):
        compile_condition("agee > 50", known={"age"})


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("a and b", {"a": True, "b": True}, True),
        ("a and b", {"a": False}, False),  # false whatever b is
        ("a and b", {"a": True}, None),  # b unknown
        ("a or b", {"b": True}, True),
        ("a or b", {"a": False}, None),
        ("not a", {}, None),
        ("not a", {"a": False}, True),
        ("x > 50", {"x": 51}, True),
        ("x > 50", {"x": 50}, False),
        ("x > 50", {}, None),
        ("s in ('p', 'q')", {"s": "q"}, True),
        ("s not in ('p', 'q')", {"s": "r"}, True),
        ("f == true", {"f": True}, True),
        ("f == false", {"f": 0}, False),  # 0 is not false
        ("n == 1", {"n": True}, False),  # true is not 1
    ],
)
def test_three_valued_evaluation(text: str, env: dict[str, object], expected: bool | None) -> None:
    assert compile_condition(text).evaluate(env) is expected


def test_ordering_text_is_an_error() -> None:
    with pytest.raises(ConditionError, match="only numbers"):
        compile_condition("s > 3").evaluate({"s": "x"})
