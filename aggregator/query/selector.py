"""Kubernetes label selectors (``labelSelector=``): the API server's grammar, parsed and matched.

A selector is a comma-separated list of requirements, all of which must hold::

    key            key exists               !key             key does not exist
    key=value      equal (also ``==``)      key!=value       not equal, or key absent
    key in (a,b)   value in the set         key notin (a,b)  value not in the set, or key absent
    key>5, key<5   value, as an integer, greater / less than the number

Keys are qualified names (``[prefix/]name``, the prefix a DNS subdomain); values are at most 63 characters
of ``[A-Za-z0-9._-]``, starting and ending alphanumeric, or empty. Whitespace between tokens is ignored.
The empty selector matches everything. Anything else raises :class:`SelectorError` naming what was found
and what was expected, as the API server does.

Usage::

    selector = parse_selector("app=web,tier in (front, back),!canary")
    selector.matches({"app": "web", "tier": "front"})   # True
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.query.errors import SelectorError


class Operator(enum.StrEnum):
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


class _Tok(enum.Enum):
    IDENTIFIER = "identifier"
    END = "end of string"
    COMMA = ","
    OPEN = "("
    CLOSE = ")"
    BANG = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    GREATER = ">"
    LESS = "<"
    IN = "in"
    NOT_IN = "notin"


# Characters that end an identifier; runs of them form the longest operator they spell.
_SPECIAL = frozenset("=!(),<>")
_SYMBOLS = {
    "=": _Tok.EQUALS,
    "==": _Tok.DOUBLE_EQUALS,
    "!": _Tok.BANG,
    "!=": _Tok.NOT_EQUALS,
    "(": _Tok.OPEN,
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    ">": _Tok.GREATER,
    "<": _Tok.LESS,
}
_KEYWORDS = {"in": _Tok.IN, "notin": _Tok.NOT_IN}
_OPERATORS = {
    _Tok.EQUALS: Operator.EQUALS,
    _Tok.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
    _Tok.NOT_EQUALS: Operator.NOT_EQUALS,
    _Tok.IN: Operator.IN,
    _Tok.NOT_IN: Operator.NOT_IN,
    _Tok.GREATER: Operator.GREATER_THAN,
    _Tok.LESS: Operator.LESS_THAN,
}

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_INTEGER = re.compile(r"[+-]?\d+")
_NAME_MAX = 63
_PREFIX_MAX = 253


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key <operator> values`` term; ``values`` is empty for exists / does-not-exist."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (Kubernetes semantics)."""
        value = labels.get(self.key)
        match self.operator:
            case Operator.EXISTS:
                return value is not None
            case Operator.DOES_NOT_EXIST:
                return value is None
            case Operator.EQUALS | Operator.DOUBLE_EQUALS | Operator.IN:
                return value is not None and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                # An absent key is "not equal" to anything, as in Kubernetes.
                return value is None or value not in self.values
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                if value is None or _INTEGER.fullmatch(value) is None:
                    return False
                (bound,) = self.values
                if self.operator is Operator.GREATER_THAN:
                    return int(value) > int(bound)
                return int(value) < int(bound)


@dataclass(frozen=True, slots=True)
class Selector:
    """Requirements that must all hold; no requirement matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every requirement."""
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements


EVERYTHING = Selector()


def parse_selector(text: str | None) -> Selector:
    """The selector ``text`` spells (``None`` or blank: everything); raises ``SelectorError`` if malformed."""
    if text is None or not text.strip():
        return EVERYTHING
    try:
        return _Parser(text).parse()
    except SelectorError as exc:
        raise SelectorError(f"invalid labelSelector {text!r}: {exc}") from exc


def _lex(text: str) -> list[tuple[_Tok, str]]:
    tokens: list[tuple[_Tok, str]] = []
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char.isspace():
            index += 1
        elif char in _SPECIAL:
            # The longest run of special characters that is still an operator: "!=" beats "!".
            stop = index + 1
            while stop < end and text[stop] in _SPECIAL and text[index : stop + 1] in _SYMBOLS:
                stop += 1
            symbol = text[index:stop]
            tokens.append((_SYMBOLS[symbol], symbol))
            index = stop
        else:
            stop = index
            while stop < end and not text[stop].isspace() and text[stop] not in _SPECIAL:
                stop += 1
            word = text[index:stop]
            tokens.append((_KEYWORDS.get(word, _Tok.IDENTIFIER), word))
            index = stop
    tokens.append((_Tok.END, ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._position = 0

    def _peek(self, *, as_value: bool = True) -> tuple[_Tok, str]:
        token, literal = self._tokens[self._position]
        # Where a key or value is expected, "in" and "notin" are plain words (a label may be called "in").
        if as_value and token in (_Tok.IN, _Tok.NOT_IN):
            token = _Tok.IDENTIFIER
        return token, literal

    def _next(self, *, as_value: bool = True) -> tuple[_Tok, str]:
        token = self._peek(as_value=as_value)
        if token[0] is not _Tok.END:
            self._position += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._peek()
            if token is _Tok.END:
                return Selector(tuple(requirements))
            if token not in (_Tok.IDENTIFIER, _Tok.BANG):
                raise SelectorError(f"found {_shown(literal)}, expected: !, identifier, or 'end of string'")
            requirements.append(self._requirement())
            token, literal = self._next()
            if token is _Tok.END:
                return Selector(tuple(requirements))
            if token is not _Tok.COMMA:
                raise SelectorError(f"found {_shown(literal)}, expected: ',' or 'end of string'")
            token, literal = self._peek()
            if token not in (_Tok.IDENTIFIER, _Tok.BANG):
                raise SelectorError(f"found {_shown(literal)}, expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = False
        token, literal = self._next()
        if token is _Tok.BANG:
            negated = True
            token, literal = self._next()
        if token is not _Tok.IDENTIFIER:
            raise SelectorError(f"found {_shown(literal)}, expected: identifier")
        key = _valid_key(literal)
        following, _ = self._peek()
        if negated:
            # "!key" stands alone; anything after it other than "," is reported by the caller.
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if following in (_Tok.END, _Tok.COMMA):
            return Requirement(key, Operator.EXISTS)
        token, literal = self._next(as_value=False)
        operator = _OPERATORS.get(token)
        if operator is None:
            raise SelectorError(f"found {_shown(literal)}, expected: in, notin, =, ==, !=, gt, lt")
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._value_set()
        else:
            values = frozenset({self._exact_value()})
        for value in values:
            _valid_value(value)
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            (bound,) = values
            if _INTEGER.fullmatch(bound) is None:
                raise SelectorError(f"for 'gt', 'lt' operators, the value must be an integer, not {bound!r}")
        return Requirement(key, operator, values)

    def _exact_value(self) -> str:
        token, literal = self._peek()
        if token in (_Tok.END, _Tok.COMMA):
            # "key=" selects an empty value, as in Kubernetes.
            return ""
        token, literal = self._next()
        if token is not _Tok.IDENTIFIER:
            raise SelectorError(f"found {_shown(literal)}, expected: identifier")
        return literal

    def _value_set(self) -> frozenset[str]:
        token, literal = self._next()
        if token is not _Tok.OPEN:
            raise SelectorError(f"found {_shown(literal)}, expected: '('")
        values: set[str] = set()
        # Empty entries ("(a,,b)", "()") stand for the empty value, as in Kubernetes.
        expect_value = True
        while True:
            token, literal = self._next()
            if token is _Tok.IDENTIFIER and expect_value:
                values.add(literal)
                expect_value = False
            elif token is _Tok.COMMA:
                if expect_value:
                    values.add("")
                expect_value = True
            elif token is _Tok.CLOSE:
                if expect_value:
                    values.add("")
                return frozenset(values)
            else:
                raise SelectorError(f"found {_shown(literal)}, expected: ',', ')' or identifier")


def _shown(literal: str) -> str:
    return f"'{literal}'" if literal else "'end of string'"


def _valid_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > _PREFIX_MAX or _DNS_SUBDOMAIN.fullmatch(prefix) is None):
        raise SelectorError(
            f"invalid label key {key!r}: the prefix must be a DNS subdomain (lowercase alphanumerics,"
            f" '-' and '.', at most {_PREFIX_MAX} characters)"
        )
    if not name or len(name) > _NAME_MAX or _NAME.fullmatch(name) is None:
        raise SelectorError(
            f"invalid label key {key!r}: the name must be 1..{_NAME_MAX} characters of [A-Za-z0-9._-],"
            " starting and ending alphanumeric"
        )
    return key


def _valid_value(value: str) -> None:
    if value and (len(value) > _NAME_MAX or _NAME.fullmatch(value) is None):
        raise SelectorError(
            f"invalid label value {value!r}: at most {_NAME_MAX} characters of [A-Za-z0-9._-],"
            " starting and ending alphanumeric (or empty)"
        )
