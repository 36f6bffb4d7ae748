"""Spark SQL expression text for the generator, and the one helper that applies it.

The generator writes every column as one SQL expression rather than a chain of ``Column``
operators: a Column expression costs a Py4J round trip per operator and literal, and the
generator's few hundred expressions with their constant tables came to ~40,000 round trips
(6 s per run). One ``F.expr`` per column is parsed in the JVM in a single call. Arguments named
``u``, ``index`` and the like are SQL text too: a column name or an expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def codegen_boundary(df: DataFrame) -> DataFrame:
    """End the generated Java method here: a no-op explode of a one-element array.

    Whole-stage codegen fuses a chain of projections into one Java method; the generator's
    chains grow past 8,000 bytes of bytecode, which HotSpot refuses to JIT-compile, and the
    stage then runs interpreted, about 5x slower. Spark puts everything a ``Generate`` consumes
    into a separate method, so a trivial explode between transforms keeps every method small
    while the stage stays fused. It costs a loop of one iteration per row; its column is
    pruned by the outputs' final selects.
    """
    name = f"_codegen_{sum(c.startswith('_codegen_') for c in df.columns)}"
    return df.select("*", F.explode(F.array(F.lit(0))).alias(name))


def _mentions(sql: str, names: list[str]) -> bool:
    return any(re.search(rf"\b{re.escape(name)}\b", sql) for name in names)


def with_sql(df: DataFrame, *steps: Mapping[str, str]) -> DataFrame:
    """Add or replace columns given as SQL expressions, step after step.

    A step's expressions see the columns of the steps before it. Steps share one
    ``withColumns`` call where Spark can resolve that as lateral column aliases, because every
    call re-analyses the whole plan and the generator's plans are large. A new call starts when
    a step reads a column an earlier step replaced (it must see the new value) or replaces a
    column using a name added in the same call (a replaced column keeps its place in front of
    the new ones, where lateral aliases are not visible).
    """
    pending: dict[str, str] = {}
    for step in steps:
        added = [name for name in pending if name not in df.columns]
        replaced = [name for name in pending if name in df.columns]
        if (
            any(name in pending for name in step)
            or any(_mentions(sql, replaced) for sql in step.values())
            or any(_mentions(sql, added) for name, sql in step.items() if name in df.columns)
        ):
            df = df.withColumns({name: F.expr(sql) for name, sql in pending.items()})
            pending = {}
        pending.update(step)
    return df.withColumns({name: F.expr(sql) for name, sql in pending.items()}) if pending else df


def rounded(x: str, digits: int = 0) -> str:
    """``x`` rounded half-up to ``digits`` decimals in double arithmetic.

    Spark's ``round`` on a double goes through ``BigDecimal`` (a decimal string conversion per
    value), which was a fifth of the orders' CPU time.
    """
    if digits == 0:
        return f"floor(({x}) + 0.5D)"
    scale = 10**digits
    return f"(floor(({x}) * {scale}.0D + 0.5D) / {scale}.0D)"


def decimal(x: str, precision: int, scale: int) -> str:
    """``x`` (a double) as DECIMAL(precision, scale), rounded half-up.

    Built from the whole number of units (cents for money) times a decimal constant: casting a
    double to DECIMAL costs a decimal string conversion, this costs a long multiplication.
    """
    units = f"CAST(floor(({x}) * {10**scale}.0D + 0.5D) AS BIGINT)"
    unit = f"0.{'0' * (scale - 1)}1BD"
    return (
        f"CAST(CAST({units} AS DECIMAL({precision}, 0)) * {unit} AS DECIMAL({precision}, {scale}))"
    )


def money(x: str) -> str:
    """A double amount as DECIMAL(10,2), the schemas' MONEY type."""
    return decimal(x, 10, 2)


def literal(value: Any) -> str:
    """A Spark SQL literal: doubles get the ``D`` suffix (a bare 0.5 would be a DECIMAL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**31) <= value < 2**31 else f"{value}L"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no SQL literal for {value}")
        return f"{value!r}D"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def array_of(values: Sequence[Any]) -> str:
    """A constant array (folded to one literal by the optimizer)."""
    return f"array({', '.join(literal(v) for v in values)})"


def lookup(values: Sequence[Any], index: str) -> str:
    """``values[index]`` for a small constant list and a 0-based index expression."""
    return f"element_at({array_of(values)}, CAST({index} AS INT) + 1)"


def lookup2(table: Sequence[Sequence[Any]], row: str, column: str) -> str:
    """``table[row][column]`` for a small constant table."""
    rows = ", ".join(array_of(values) for values in table)
    return (
        f"element_at(element_at(array({rows}), CAST({row} AS INT) + 1), CAST({column} AS INT) + 1)"
    )


def pick(u: str, bounds: Sequence[float] | Sequence[str]) -> str:
    """Index of the first cumulative bound above ``u`` (a categorical draw; last bound is 1).

    ``u`` appears once per bound, so pass a column name, not a hash expression.
    """
    if len(bounds) == 1:
        return "0"
    branches = " ".join(
        f"WHEN {u} < {literal(float(b)) if not isinstance(b, str) else b} THEN {i}"
        for i, b in enumerate(bounds[:-1])
    )
    return f"CASE {branches} ELSE {len(bounds) - 1} END"


def block_of(index: str, starts: Sequence[int]) -> str:
    """Which contiguous block (given by ascending start offsets) an index falls in."""
    if len(starts) == 1:
        return "0"
    branches = " ".join(f"WHEN {index} < {literal(s)} THEN {i}" for i, s in enumerate(starts[1:]))
    return f"CASE {branches} ELSE {len(starts) - 1} END"
