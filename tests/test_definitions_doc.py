"""docs/definitions.md defines every extended field and every mart column the gold layer has.

The columns come from ``batch.analytics.GOLD_COLUMNS``; an entity's own columns (its raw schema)
need no definition there. No Spark needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparkmart.batch.analytics import GOLD_COLUMNS
from sparkmart.schemas import RAW_SCHEMAS

DOC = Path(__file__).resolve().parents[1] / "docs" / "definitions.md"
# The extended fields DESIGN.md promises, each with a written definition.
EXTENDED = {
    "customers": ["lifetime_value", "segment", "activity_score", "preferred_category"],
    "products": ["popularity_score", "profit_margin", "inventory_turnover", "recommendation_rank"],
    "orders": ["processing_time", "fraud_score", "customer_satisfaction", "revenue_impact"],
}


def defined_columns() -> dict[str, set[str]]:
    """{section heading: column names in the first cell of its table rows}."""
    sections: dict[str, set[str]] = {}
    current = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections.setdefault(current, set())
        elif line.startswith("| `") and current:
            sections[current] |= set(re.findall(r"`([a-z_0-9]+)`", line.split(" | ")[0]))
    return sections


def section_for(table: str) -> str:
    return f"{table} (gold)" if table in RAW_SCHEMAS else f"Mart: {table}"


@pytest.mark.parametrize("table", sorted(GOLD_COLUMNS))
def test_every_computed_gold_column_is_defined_in_its_section(table: str) -> None:
    sections = defined_columns()
    heading = section_for(table)
    assert heading in sections, f"docs/definitions.md has no section '## {heading}'"
    own = set(RAW_SCHEMAS[table].names) if table in RAW_SCHEMAS else set()
    missing = [c for c in GOLD_COLUMNS[table] if c not in own and c not in sections[heading]]
    assert not missing, f"docs/definitions.md, '## {heading}', lacks a row for {missing}"


@pytest.mark.parametrize("table", sorted(EXTENDED))
def test_the_designed_extended_fields_exist_and_are_defined(table: str) -> None:
    defined = defined_columns()[section_for(table)]
    for column in EXTENDED[table]:
        assert column in GOLD_COLUMNS[table], f"gold {table} has no column {column}"
        assert column in defined, f"docs/definitions.md does not define {table}.{column}"
