"""The condition language of the definitions, evaluated safely and in three values.

Conditions are parsed with :mod:`ast` and only a small whitelist of node types is
accepted (names, literals, comparisons, ``and``/``or``/``not``); nothing is ever handed
to ``eval``. A name whose value is not known yet (an unanswered question) makes a
condition *unknown* (``None``) instead of false, so a rule fires during a visit only once
it is definitely true.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

Value = bool | int | float | str | tuple[Any, ...] | None

_LITERAL_NAMES: dict[str, bool] = {"true": True, "false": False, "True": True, "False": False}
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)


class ConditionError(ValueError):
    """A condition that is not in the language, or is used with the wrong kind of value."""


def _check(node: ast.AST, text: str, names: set[str]) -> None:
    if isinstance(node, ast.Expression):
        _check(node.body, text, names)
    elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or):
        for value in node.values:
            _check(value, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, text, names)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1 or not isinstance(node.ops[0], _COMPARE):
            raise ConditionError(f"{text!r}: use one comparison at a time (a < b and b < c)")
        _check(node.left, text, names)
        _check(node.comparators[0], text, names)
        if isinstance(node.ops[0], ast.In | ast.NotIn) and not isinstance(
            node.comparators[0], ast.Tuple
        ):
            raise ConditionError(f"{text!r}: 'in' needs a list in parentheses: x in ('a', 'b')")
    elif isinstance(node, ast.Name):
        if node.id not in _LITERAL_NAMES:
            names.add(node.id)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, bool | int | float | str):
            raise ConditionError(f"{text!r}: {node.value!r} is not a number, text or true/false")
    elif isinstance(node, ast.Tuple):
        for item in node.elts:
            if not isinstance(item, ast.Constant):
                raise ConditionError(f"{text!r}: lists may only hold literal values")
            _check(item, text, names)
    else:
        raise ConditionError(f"{text!r}: {type(node).__name__} is not allowed in a condition")


@dataclass(frozen=True)
class Condition:
    """A parsed condition; :meth:`evaluate` gives True, False or None (unknown)."""

    source: str
    names: frozenset[str]
    _tree: ast.Expression

    def evaluate(self, env: Mapping[str, Any]) -> bool | None:
        result = _eval(self._tree.body, env, self.source)
        if result is None or isinstance(result, bool):
            return result
        raise ConditionError(f"{self.source!r} does not give true or false")

    def holds(self, env: Mapping[str, Any]) -> bool:
        """Definitely true (unknown counts as no)."""
        return self.evaluate(env) is True


def compile_condition(text: str, known: Collection[str] | None = None) -> Condition:
    """Parse ``text``; with ``known``, every name must be one of them."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"{text!r} is not a valid condition: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, text, names)
    if known is not None:
        unknown = sorted(names - set(known))
        if unknown:
            raise ConditionError(f"{text!r} uses unknown name(s): {', '.join(unknown)}")
    return Condition(text.strip(), frozenset(names), tree)


def _truth(value: Any, source: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ConditionError(f"{source!r}: {value!r} is not true or false")


def _eval(node: ast.expr, env: Mapping[str, Any], source: str) -> Any:
    if isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            return _LITERAL_NAMES[node.id]
        return env.get(node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_eval(item, env, source) for item in node.elts)
    if isinstance(node, ast.UnaryOp):  # only `not`
        inner = _truth(_eval(node.operand, env, source), source)
        return None if inner is None else not inner
    if isinstance(node, ast.BoolOp):
        values = [_truth(_eval(v, env, source), source) for v in node.values]
        if isinstance(node.op, ast.And):
            if False in values:
                return False
            return None if None in values else True
        if True in values:
            return True
        return None if None in values else False
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env, source)
        right = _eval(node.comparators[0], env, source)
        if left is None or right is None:
            return None
        return _compare(node.ops[0], left, right, source)
    raise ConditionError(f"{source!r}: cannot evaluate {type(node).__name__}")


def _equal(left: Any, right: Any) -> bool:
    # true is not 1: booleans only equal booleans
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _compare(op: ast.cmpop, left: Any, right: Any, source: str) -> bool:
    if isinstance(op, ast.Eq):
        return _equal(left, right)
    if isinstance(op, ast.NotEq):
        return not _equal(left, right)
    if isinstance(op, ast.In):
        return any(_equal(left, item) for item in right)
    if isinstance(op, ast.NotIn):
        return not any(_equal(left, item) for item in right)
    numeric = (int, float)
    if (
        isinstance(left, bool)
        or isinstance(right, bool)
        or not isinstance(left, numeric)
        or not isinstance(right, numeric)
    ):
        raise ConditionError(f"{source!r}: only numbers can be ordered, got {left!r}, {right!r}")
    if isinstance(op, ast.Lt):
        return bool(left < right)
    if isinstance(op, ast.LtE):
        return bool(left <= right)
    if isinstance(op, ast.Gt):
        return bool(left > right)
    return bool(left >= right)
