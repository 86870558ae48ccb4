"""README.md's compatibility tables against the routes velesio declares, so they cannot drift.

Any README heading ending in ``(dialect `name`)`` starts a table of that dialect's routes, where
``name`` is the ``Dialect`` name a route module declares (``llamacpp``, ``openai``, ``anthropic``,
``ollama``, ``a1111``): ``### Compatibility: Ollama (dialect `ollama`)`` is one. Its rows are
``| `path` | METHODS | served | notes |``, ``served`` one of "as the reference", "differently",
"velesio only" or "not served". Every route the dialect declares has a row with its methods, and
a row that says a route is served names a declared one; a row "not served" names one that is not.

No declared route is skipped. Routes velesio adds in a dialect's error shape that have no
counterpart in the server the dialect imitates (the admin API /admin/*, the console /ui*, which
answer in llama.cpp's shape; OpenAI's Images) say "velesio only" and are checked like the rest.
Only OPTIONAL routes, which the app adds from a setting rather than from a route module, may have
a row without being declared here. Adding a dialect's table is adding its heading and rows:
nothing here changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.support.processes import ROOT
from tests.support.routes import route_table

#: Dialects whose table must exist (others are checked once their table is in the README).
REQUIRED = ("llamacpp", "openai", "anthropic", "ollama", "a1111")
SERVED = ("as the reference", "differently", "velesio only")
NOT_SERVED = "not served"
#: Routes an app adds only with a setting, outside the route modules' table (METRICS).
OPTIONAL = {"/metrics"}

_HEADING = re.compile(r"^#{2,4} .*\(dialect `(?P<dialect>[\w.-]+)`\)\s*$")
_ROW = re.compile(r"^\|\s*`(?P<path>[^`]+)`\s*\|\s*(?P<methods>[A-Z, ]+?)\s*\|\s*(?P<served>[a-z ]+?)\s*\|")


@dataclass(frozen=True)
class Row:
    path: str
    methods: frozenset[str]
    served: str


def readme_tables(text: str) -> dict[str, list[Row]]:
    tables: dict[str, list[Row]] = {}
    dialect = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            dialect = heading["dialect"]
            tables[dialect] = []
        elif line.startswith("#"):
            dialect = None
        elif dialect is not None and (row := _ROW.match(line)):
            methods = frozenset(method.strip() for method in row["methods"].split(","))
            tables[dialect].append(Row(row["path"], methods, row["served"]))
    return tables


TABLES = readme_tables((ROOT / "README.md").read_text())


def test_the_required_dialects_have_a_table():
    assert set(REQUIRED) <= set(TABLES)


@pytest.mark.parametrize("dialect", sorted(TABLES))
def test_every_declared_route_has_its_row(dialect):
    rows = {row.path: row for row in TABLES[dialect]}
    declared = [route for route in route_table() if route.dialect == dialect]
    assert declared, f"no route speaks {dialect}"
    missing = [route.path for route in declared if route.path not in rows]
    assert missing == [], f"README's {dialect} table lacks {missing}"
    for route in declared:
        row = rows[route.path]
        assert row.served in SERVED, f"{route.path} is served, README says {row.served!r}"
        assert row.methods == set(route.methods), f"{route.path}: README says {sorted(row.methods)}"


@pytest.mark.parametrize("dialect", sorted(TABLES))
def test_every_row_is_a_declared_route_or_says_not_served(dialect):
    declared = {route.path for route in route_table() if route.dialect == dialect}
    for row in TABLES[dialect]:
        assert row.served in (*SERVED, NOT_SERVED), f"{row.path}: {row.served!r}"
        if row.served == NOT_SERVED:
            assert row.path not in declared, f"{row.path} is served now: README says it is not"
        else:
            assert row.path in declared or row.path in OPTIONAL, f"README lists {row.path}, which no route serves"


def test_the_check_reads_a_table_as_written():
    # The parser itself, on a table made up here: a drift it could not see would pass silently.
    tables = readme_tables(
        "## Some API (dialect `x`)\n\n| Route | Methods | Served | Notes |\n|---|---|---|---|\n"
        "| `/a` | GET, POST | differently | why |\n| `/b` | GET | not served | |\n| `/u` | GET | velesio only | |\n"
        "## Next\n| `/c` | GET | x | |\n"
    )
    assert tables == {
        "x": [
            Row("/a", frozenset({"GET", "POST"}), "differently"),
            Row("/b", frozenset({"GET"}), "not served"),
            Row("/u", frozenset({"GET"}), "velesio only"),
        ]
    }
