"""Reading InfluxQL back: which measurements, fields and tags a dashboard query refers to.

Enough of InfluxQL for the statements the dashboards write (``SELECT`` with functions, arithmetic,
``AS``, subqueries, ``WHERE`` comparisons, ``GROUP BY``, ``fill``; ``SHOW TAG VALUES ... WITH KEY``), so
tests can check every name a query uses against the catalog without trusting the code that wrote it.
Grafana placeholders (``$timeFilter``, ``$node``, ``${var}``, ``[[var]]``) are read as opaque values.

Usage::

    refs = references('SELECT mean("cpu_usage_millicores") AS "CPU" FROM "pod" WHERE $timeFilter'
                      ' AND "node" =~ /^$node$/ GROUP BY time($__interval), "pod" fill(null)')
    refs.measurements, refs.fields, refs.tags   # {"pod"}, {"cpu_usage_millicores"}, {"node", "pod"}
    refs.group_by                               # ("pod",): the tag keys of every result series
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dashboards.errors import RenderError

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<ident>"(?:[^"\\]|\\.)*")
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])
  | (?P<number>\d+(?:\.\d+)?(?:ns|u|µ|ms|s|m|h|d|w)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>=~|!~|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),;*+\-/%])
    """,
    re.VERBOSE,
)
_REGEX_BODY = re.compile(r"/(?:[^/\\\n]|\\.)*/")
_CLAUSES = ("GROUP", "FILL", "LIMIT", "SLIMIT", "OFFSET", "SOFFSET", "ORDER", "TZ")
"""Words that start a clause after ``WHERE``."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    """``ident`` (a double-quoted name), ``word``, ``string``, ``regex``, ``var``, ``number``, ``op`` or
    ``punct``."""
    text: str

    @property
    def name(self) -> str:
        """A quoted identifier's name without quotes and escapes; any other token's text."""
        if self.kind != "ident":
            return self.text
        return re.sub(r"\\(.)", r"\1", self.text[1:-1])

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``; a ``/`` right after ``=~`` or ``!~`` starts a regex literal."""
    tokens: list[Token] = []
    position = 0
    while position < len(query):
        if tokens and tokens[-1].kind == "op" and tokens[-1].text in ("=~", "!~"):
            # Regex literals only follow the match operators; elsewhere ``/`` divides.
            start = position + len(query[position:]) - len(query[position:].lstrip())
            match = _REGEX_BODY.match(query, start)
            if match is None:
                raise RenderError(f"unterminated regex at {start} in: {query}")
            tokens.append(Token("regex", match.group()))
            position = match.end()
            continue
        match = _TOKEN.match(query, position)
        if match is None:
            raise RenderError(f"cannot read InfluxQL at {position}: {query[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None  # every alternative is a named group
        if kind != "space":
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


@dataclass(frozen=True, slots=True)
class References:
    """The names a statement uses, by role."""

    measurements: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    """Names read as field values (in ``SELECT`` from a measurement)."""
    tags: frozenset[str] = frozenset()
    """Names compared in ``WHERE``, listed in ``GROUP BY``, keyed by ``WITH KEY`` or selected from a
    subquery's tags."""
    group_by: tuple[str, ...] = ()
    """The outer statement's ``GROUP BY`` tags: the tag keys of every series it returns."""
    by_time: bool = False
    """Whether the outer statement groups by ``time(...)``."""
    columns: tuple[str, ...] = ()
    """The outer statement's value columns (``AS`` names, else the field name)."""
    tag_key: str | None = None
    """``SHOW TAG VALUES ... WITH KEY = "<tag>"``: the tag whose values are listed."""
    filtered: frozenset[str] = frozenset()
    """The tags the statement's own ``WHERE`` compares (a subquery's are in ``inner``)."""
    inner: References | None = None
    """The subquery the statement reads from, if any."""


@dataclass
class _Parser:
    tokens: list[Token]
    position: int = 0
    measurements: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    filtered: set[str] = field(default_factory=set)

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise RenderError("InfluxQL ends too early")
        self.position += 1
        return token

    def expect_word(self, *words: str) -> None:
        token = self.take()
        if not token.is_word(*words):
            raise RenderError(f"expected {' or '.join(words)}, found {token.text!r}")

    def name(self) -> str:
        token = self.take()
        if token.kind not in ("ident", "word"):
            raise RenderError(f"expected a name, found {token.text!r}")
        return token.name

    def statement(self) -> References:
        head = self.peek()
        if head is not None and head.is_word("SHOW"):
            return self.show_tag_values()
        return self.select()

    def show_tag_values(self) -> References:
        self.expect_word("SHOW")
        self.expect_word("TAG")
        self.expect_word("VALUES")
        self.expect_word("FROM")
        self.measurements.add(self.name())
        self.expect_word("WITH")
        self.expect_word("KEY")
        operator = self.take()
        if operator.text != "=":
            raise RenderError(f"only WITH KEY = is read, found {operator.text!r}")
        key = self.name()
        self.tags.add(key)
        if (token := self.peek()) is not None and token.is_word("WHERE"):
            self.take()
            self.condition()
        return self.result(tag_key=key, filtered=frozenset(self.filtered))

    def select(self) -> References:
        self.expect_word("SELECT")
        items = self.select_items()
        self.expect_word("FROM")
        inner: References | None = None
        if (token := self.peek()) is not None and token.text == "(":
            self.take()
            # The subquery's own WHERE tags are its own: keep them apart from this statement's.
            outer_filtered, self.filtered = self.filtered, set()
            inner = self.select()
            self.filtered = outer_filtered
            if self.take().text != ")":
                raise RenderError("subquery is not closed")
        else:
            self.measurements.add(self.name())
        group_by: list[str] = []
        by_time = False
        while (token := self.peek()) is not None and token.text != ")":
            if token.is_word("WHERE"):
                self.take()
                self.condition()
            elif token.is_word("GROUP"):
                self.take()
                self.expect_word("BY")
                by_time, group_by = self.group_by()
            elif token.is_word(*_CLAUSES):
                self.skip_clause()
            else:
                raise RenderError(f"unexpected {token.text!r} in SELECT")
        columns = []
        for alias, names in items:
            for name in names:
                if inner is None:
                    self.fields.add(name)
                elif name in inner.group_by:
                    self.tags.add(name)
                elif name not in inner.columns:
                    raise RenderError(f"{name!r} is neither a column nor a tag of the subquery")
            if alias is not None:
                columns.append(alias)
            elif len(names) == 1 and not (inner is not None and names[0] in inner.group_by):
                columns.append(names[0])
        return self.result(
            group_by=tuple(group_by),
            by_time=by_time,
            columns=tuple(columns),
            filtered=frozenset(self.filtered),
            inner=inner,
        )

    def select_items(self) -> list[tuple[str | None, list[str]]]:
        """Each selected expression as (its ``AS`` name, the names it reads)."""
        items: list[tuple[str | None, list[str]]] = []
        names: list[str] = []
        alias: str | None = None
        depth = 0
        while (token := self.peek()) is not None and not (depth == 0 and token.is_word("FROM")):
            self.take()
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
            elif token.text == "," and depth == 0:
                items.append((alias, names))
                names, alias = [], None
            elif token.is_word("AS"):
                alias = self.name()
            elif token.kind == "ident":
                names.append(token.name)
        items.append((alias, names))
        return items

    def condition(self) -> None:
        """``WHERE``: every name right before a comparison operator is a tag (dashboards never filter on
        field values). Stops at the next clause, or at the ``)`` closing the subquery it is in."""
        depth = 0
        while (token := self.peek()) is not None:
            if depth == 0 and (token.text == ")" or token.is_word(*_CLAUSES)):
                return
            self.take()
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            following = self.peek()
            if token.kind == "ident" and following is not None and following.kind == "op":
                self.tags.add(token.name)
                self.filtered.add(token.name)

    def group_by(self) -> tuple[bool, list[str]]:
        by_time = False
        tags: list[str] = []
        while (token := self.peek()) is not None and token.text != ")" and not token.is_word(*_CLAUSES):
            self.take()
            if token.is_word("TIME"):
                by_time = True
                self.skip_parenthesised()
            elif token.kind in ("ident", "word"):
                tags.append(token.name)
                self.tags.add(token.name)
        return by_time, tags

    def skip_parenthesised(self) -> None:
        if self.take().text != "(":
            raise RenderError("expected (")
        depth = 1
        while depth:
            token = self.take()
            depth += {"(": 1, ")": -1}.get(token.text, 0)

    def skip_clause(self) -> None:
        if self.take().is_word("ORDER"):
            self.expect_word("BY")
            self.expect_word("TIME")
            if (token := self.peek()) is not None and token.is_word("ASC", "DESC"):
                self.take()
            return
        if (token := self.peek()) is not None and token.text == "(":
            self.skip_parenthesised()
        elif token is not None and token.kind in ("number", "var"):
            self.take()

    def result(
        self,
        *,
        group_by: tuple[str, ...] = (),
        by_time: bool = False,
        columns: tuple[str, ...] = (),
        tag_key: str | None = None,
        filtered: frozenset[str] = frozenset(),
        inner: References | None = None,
    ) -> References:
        return References(
            measurements=frozenset(self.measurements),
            fields=frozenset(self.fields),
            tags=frozenset(self.tags),
            group_by=group_by,
            by_time=by_time,
            columns=columns,
            tag_key=tag_key,
            filtered=filtered,
            inner=inner,
        )


def references(query: str) -> References:
    """The measurements, fields and tags one InfluxQL statement refers to (see :class:`References`)."""
    parser = _Parser(tokenize(query))
    refs = parser.statement()
    if (token := parser.peek()) is not None:
        raise RenderError(f"unexpected {token.text!r} after the statement in: {query}")
    return refs
