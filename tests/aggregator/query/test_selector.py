"""The Kubernetes label-selector grammar: what parses, what matches, and what is refused with a message."""

from __future__ import annotations

import pytest

from aggregator.query.errors import SelectorError
from aggregator.query.selector import Operator, Requirement, parse_selector

LABELS = {"app": "web", "tier": "front", "env": "prod", "replicas": "3", "example.com/team": "a", "empty": ""}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("   ", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # an absent key is "not equal"
        ("app in (web, db)", True),
        ("app in (db,cache)", False),
        ("app notin (db)", True),
        ("app notin (web,db)", False),
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("replicas>2", True),
        ("replicas>3", False),
        ("replicas<4", True),
        ("app>1", False),  # not a number: never greater
        ("example.com/team=a", True),
        ("empty=", True),
        ("empty in ()", True),
        ("app in (,web)", True),
        ("app=web,tier in (front,back),!canary", True),
        ("app=web,tier=back", False),
        ("in=x", False),  # "in" is a plain key where a key is expected
    ],
)
def test_selectors_match_as_kubernetes_does(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_the_parsed_form_is_what_was_written() -> None:
    selector = parse_selector("a=b, c notin (d,e), !f, g")
    assert selector.requirements == (
        Requirement("a", Operator.EQUALS, frozenset({"b"})),
        Requirement("c", Operator.NOT_IN, frozenset({"d", "e"})),
        Requirement("f", Operator.DOES_NOT_EXIST),
        Requirement("g", Operator.EXISTS),
    )
    assert parse_selector(None).empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a=b,", "expected: identifier after ','"),
        (",a=b", "expected: !, identifier, or 'end of string'"),
        ("a in b", "expected: '('"),
        ("a in (b", "expected: ',', ')' or identifier"),
        ("a in", "found 'end of string', expected: '('"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a b", "expected: in, notin, =, ==, !=, gt, lt"),
        ("a=(b)", "found '(', expected: identifier"),
        ("a>b", "must be an integer"),
        ("-a=b", "invalid label key '-a'"),
        ("Example.com/a=b", "prefix must be a DNS subdomain"),
        ("a/b/c=d", "prefix must be a DNS subdomain"),
        ("/a=b", "prefix must be a DNS subdomain"),
        (f"{'a' * 64}=b", "invalid label key"),
        (f"a={'b' * 64}", "invalid label value"),
        ("a=b_", "invalid label value 'b_'"),
        ("a in (b,-c)", "invalid label value '-c'"),
        ("!", "found 'end of string', expected: identifier"),
    ],
)
def test_malformed_selectors_are_refused_with_what_was_found_and_expected(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_selector(text)
    assert message in str(raised.value)
    assert repr(text) in str(raised.value)
