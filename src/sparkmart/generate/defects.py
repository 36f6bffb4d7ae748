"""Plant data-quality defects in clean rows and record each one in the ground truth.

Which row carries which defect is decided by a hash of (seed, entity, business key) alone: one
uniform per row, split into intervals by the configured rates. So a row carries at most one
defect, the choice does not depend on any other attribute, and a filter on ``_defect`` can be
evaluated first: the truth table and the garbage lines compute full rows only for the few
selected keys (Spark pushes the filter down to the start of the plan).

Defects (docs/generator.md has the exact definitions):

- value defects change the row in place: null_value, bad_email, bad_phone, bad_quantity,
  orphan_fk, bad_date;
- extra rows: exact_duplicate (an identical copy), near_duplicate (an older version of the
  row: same key, earlier updated_at, an earlier value in one field);
- malformed_line: an extra garbage line, only in the CSV and JSON files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkmart.generate.params import (
    BAD_DATE_PAST_YEAR,
    EMAIL_DOMAINS,
    PAYMENT_METHODS,
    GenerationPlan,
)
from sparkmart.generate.random import below, stream_id, uniform
from sparkmart.generate.sql import array_of, codegen_boundary, literal, lookup, money, with_sql
from sparkmart.io.files import TEXT_OPTIONS
from sparkmart.schemas import PRIMARY_KEYS, RAW_SCHEMAS

DEFECT = "_defect"
CLEAN_EMAIL_REGEX = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
CLEAN_PHONE_REGEX = r"^\+1-555-[0-9]{3}-[0-9]{4}$"


@dataclass(frozen=True)
class EntityDefects:
    """Which defects an entity can carry and which columns may be nulled."""

    entity: str
    kinds: tuple[str, ...]
    null_columns: tuple[str, ...]

    @property
    def key(self) -> str:
        return PRIMARY_KEYS[self.entity]

    @property
    def columns(self) -> list[str]:
        return RAW_SCHEMAS[self.entity].fieldNames()


ENTITY_DEFECTS: Mapping[str, EntityDefects] = {
    "customers": EntityDefects(
        "customers",
        (
            "null_value",
            "exact_duplicate",
            "near_duplicate",
            "bad_email",
            "bad_phone",
            "bad_date",
            "malformed_line",
        ),
        ("first_name", "last_name", "email", "phone", "city", "country", "signup_date"),
    ),
    "products": EntityDefects(
        "products",
        ("null_value", "exact_duplicate", "near_duplicate", "malformed_line"),
        ("name", "category", "brand", "price", "cost", "stock_quantity"),
    ),
    "orders": EntityDefects(
        "orders",
        (
            "null_value",
            "exact_duplicate",
            "near_duplicate",
            "bad_quantity",
            "orphan_fk",
            "bad_date",
            "malformed_line",
        ),
        (
            "customer_id",
            "product_id",
            "quantity",
            "unit_price",
            "discount",
            "order_ts",
            "status",
            "payment_method",
        ),
    ),
}
PAST_EPOCH = -2208988800  # 1900-01-01T00:00:00Z: out-of-range dates fall in 1900..1909
FUTURE_YEARS = 50  # future dates fall 50..60 years after the end of the history
YEAR_SECONDS = 365 * 86400
VALUE_DEFECTS = ("null_value", "bad_email", "bad_phone", "bad_quantity", "orphan_fk", "bad_date")


def _u(plan: GenerationPlan, spec: EntityDefects, salt: str) -> str:
    return uniform(plan.seed, spec.key, f"defect/{spec.entity}/{salt}")


def _variant(plan: GenerationPlan, spec: EntityDefects, count: int) -> str:
    return below(_u(plan, spec, "variant"), count)


def _is(kind: str) -> str:
    return f"{DEFECT} = {literal(kind)}"


def mark_defects(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Add ``_defect``: the defect this row's key carries, or null for a clean row."""
    branches, bound = [], 0.0
    for kind in spec.kinds:
        rate = plan.defect_rates.get(kind, 0.0)
        if rate > 0:
            bound += rate
            branches.append(f"WHEN _u_defect < {literal(bound)} THEN {literal(kind)}")
    kind_sql = f"CASE {' '.join(branches)} END" if branches else "CAST(NULL AS STRING)"
    return with_sql(
        df,
        {"_u_defect": _u(plan, spec, "kind")},
        {DEFECT: kind_sql},
    )


# --- value defects -------------------------------------------------------------------------


def _null_value(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Null one otherwise never-null column; remember the column and its old value."""
    hit = _is("null_value")
    old_value = " ".join(
        f"WHEN {i} THEN CAST({name} AS STRING)" for i, name in enumerate(spec.null_columns)
    )
    columns = {
        "_defect_column": f"CASE WHEN {hit} THEN {lookup(spec.null_columns, '_null_column')} END",
        "_defect_detail": f"CASE WHEN {hit}"
        f" THEN concat('was ', coalesce(CASE _null_column {old_value} END, '?')) END",
    }
    for i, name in enumerate(spec.null_columns):
        columns[name] = f"CASE WHEN {hit} AND _null_column = {i} THEN NULL ELSE {name} END"
    return with_sql(
        df,
        {"_null_column": below(_u(plan, spec, "null_column"), len(spec.null_columns))},
        columns,
    )


def bad_email(email: str, variant: str) -> str:
    """Four malformed forms of a valid email; each fails CLEAN_EMAIL_REGEX."""
    return (
        f"CASE {variant} WHEN 0 THEN replace({email}, '@', '')"  # no @
        f" WHEN 1 THEN replace({email}, '@', '@@')"  # two @
        f" WHEN 2 THEN concat(substring_index({email}, '@', 1), '@')"  # no domain
        f" ELSE regexp_replace({email}, '^([a-z]+)[.]', '$1 ') END"  # a space
    )


def bad_phone(phone: str, variant: str) -> str:
    """Four malformed phones; each has fewer than 10 digits and fails CLEAN_PHONE_REGEX."""
    return (
        f"CASE {variant} WHEN 0 THEN substring({phone}, 1, 10)"  # "+1-555-123": cut short
        f" WHEN 1 THEN concat(substring({phone}, 1, 7), 'TBD')"  # a placeholder
        " WHEN 2 THEN 'n/a'"
        f" ELSE substring(regexp_replace({phone}, '[^0-9]', ''), 1, 7) END"  # digits lost
    )


def _value_changes(spec: EntityDefects, plan: GenerationPlan) -> list[tuple[str, str, str, str]]:
    """(condition, column, defective value, detail) of the in-place defects but null_value."""
    variant = _variant(plan, spec, 4)
    u = _u(plan, spec, "value")
    changes: list[tuple[str, str, str, str]] = []

    def change(kind: str, column: str, value: str, condition: str = "") -> None:
        if kind in spec.kinds:
            detail = f"CAST({value} AS STRING)"
            changes.append((condition or _is(kind), column, value, detail))

    if spec.entity == "customers":
        change("bad_email", "email", bad_email("email", variant))
        change("bad_phone", "phone", bad_phone("phone", variant))
        bad_signup = f"date_add(DATE'{BAD_DATE_PAST_YEAR}-01-01', CAST({below(u, 3650)} AS INT))"
        change("bad_date", "signup_date", bad_signup)
    elif spec.entity == "orders":
        change("bad_quantity", "quantity", f"CAST(0 - {below(u, 5)} AS INT)")
        past = f"{PAST_EPOCH}L + {below(u, 10 * YEAR_SECONDS)}"
        # far enough ahead to be in the future of any run (a quality check's "now")
        future = f"{plan.end_epoch + FUTURE_YEARS * YEAR_SECONDS}L + {below(u, 10 * YEAR_SECONDS)}"
        when = f"timestamp_seconds(CASE WHEN {variant} < 2 THEN {future} ELSE {past} END)"
        change("bad_date", "order_ts", when)
        # an id past the end of the referenced table: guaranteed not to exist
        to_customer = f"{_u(plan, spec, 'orphan_column')} < 0.5D"
        orphans = (
            ("customer_id", to_customer, plan.n_customers),
            ("product_id", f"NOT ({to_customer})", plan.n_products),
        )
        for column, side, n in orphans:
            value = f"{n + 1}L + {below(u, n)}"
            change("orphan_fk", column, value, f"{_is('orphan_fk')} AND {side}")
    return changes


def _value_defects(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Apply the in-place defects other than null_value (bad email/phone/quantity/fk/date)."""
    changes = _value_changes(spec, plan)
    if not changes:
        return df
    columns = {
        "_defect_column": "CASE "
        + " ".join(f"WHEN {cond} THEN {literal(col)}" for cond, col, _, _ in changes)
        + " ELSE _defect_column END",
        "_defect_detail": "CASE "
        + " ".join(f"WHEN {cond} THEN {detail}" for cond, _, _, detail in changes)
        + " ELSE _defect_detail END",
    }
    for column in dict.fromkeys(col for _, col, _, _ in changes):
        branches = " ".join(f"WHEN {c} THEN {v}" for c, col, v, _ in changes if col == column)
        columns[column] = f"CASE {branches} ELSE {column} END"
    return with_sql(df, columns)


def apply_value_defects(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Rows as written, with value defects; ``_defect_column``/``_defect_detail`` describe them."""
    return df.transform(_null_value, spec, plan).transform(_value_defects, spec, plan)


# --- extra rows ----------------------------------------------------------------------------


def _older_customer(spec: EntityDefects, plan: GenerationPlan) -> tuple[dict[str, str], str]:
    """Another valid email domain or phone; updated_at between signup and the current one."""
    variant = _variant(plan, spec, 2)
    other_domain = (
        f"CASE WHEN substring_index(email, '@', -1) = {literal(EMAIL_DOMAINS[0])}"
        f" THEN {literal(EMAIL_DOMAINS[1])} ELSE {literal(EMAIL_DOMAINS[0])} END"
    )
    last4 = "lpad(CAST(pmod(CAST(substring(phone, 12, 4) AS INT) + 1, 10000) AS STRING), 4, '0')"
    signup = "CAST(datediff(signup_date, DATE'1970-01-01') AS BIGINT) * 86400"
    fraction = f"(0.1D + 0.8D * {_u(plan, spec, 'older')})"
    older = (
        f"{signup} + CAST(floor((unix_timestamp(updated_at) - {signup}) * {fraction}) AS BIGINT)"
    )
    changed = {
        "email": f"CASE WHEN {variant} = 0"
        f" THEN concat(substring_index(email, '@', 1), '@', {other_domain}) ELSE email END",
        "phone": f"CASE WHEN {variant} = 1 THEN concat(substring(phone, 1, 11), {last4})"
        " ELSE phone END",
        "_defect_column": f"CASE WHEN {variant} = 0 THEN 'email' ELSE 'phone' END",
    }
    return changed, older


def _older_product(spec: EntityDefects, plan: GenerationPlan) -> tuple[dict[str, str], str]:
    """Another stock level or a 10% higher price, 1-60 days earlier."""
    variant = _variant(plan, spec, 2)
    u = _u(plan, spec, "older")
    changed = {
        "stock_quantity": f"CASE WHEN {variant} = 0"
        f" THEN CAST(stock_quantity + 1 + {below(u, 50)} AS INT) ELSE stock_quantity END",
        "price": f"CASE WHEN {variant} = 1 THEN {money('CAST(price AS DOUBLE) * 1.1D')}"
        " ELSE price END",
        "_defect_column": f"CASE WHEN {variant} = 0 THEN 'stock_quantity' ELSE 'price' END",
    }
    return changed, f"unix_timestamp(updated_at) - 86400 * (1 + {below(u, 60)})"


def _older_order(spec: EntityDefects, plan: GenerationPlan) -> tuple[dict[str, str], str]:
    """The previous status (returned -> delivered -> shipped -> processing, cancelled ->
    processing) as of that status' time; orders still processing: the first payment method."""
    previous = (
        "CASE status WHEN 'returned' THEN 'delivered' WHEN 'delivered' THEN 'shipped'"
        " WHEN 'shipped' THEN 'processing' WHEN 'cancelled' THEN 'processing' ELSE status END"
    )
    position = f"array_position({array_of(PAYMENT_METHODS)}, payment_method)"  # 1-based
    other_method = lookup(PAYMENT_METHODS, f"pmod({position}, {len(PAYMENT_METHODS)})")
    changed = {
        "status": previous,
        "payment_method": f"CASE WHEN status = 'processing' THEN {other_method}"
        " ELSE payment_method END",
        "shipped_ts": "CASE WHEN status IN ('returned', 'delivered') THEN shipped_ts END",
        "delivered_ts": "CASE WHEN status = 'returned' THEN delivered_ts END",
        "_defect_column": "CASE WHEN status = 'processing' THEN 'payment_method' ELSE 'status' END",
    }
    older = (
        "unix_timestamp(CASE status WHEN 'returned' THEN delivered_ts"
        " WHEN 'delivered' THEN shipped_ts ELSE order_ts END)"
    )
    return changed, older


OLD = "_old_"  # prefix of the older-version columns


def with_older_version(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Add the row as it was before its last update, as ``_old_*`` columns.

    An earlier updated_at and an earlier value in one field. customers: another valid email
    domain or phone; products: another stock level or a 10% higher price; orders: the previous
    status or, for orders still processing, the payment method first chosen. Every older
    version is otherwise a clean row. ``_near_column``/``_near_detail`` describe it.
    """
    build = {"customers": _older_customer, "products": _older_product, "orders": _older_order}
    changed, older_epoch = build[spec.entity](spec, plan)
    near_column = changed.pop("_defect_column")
    near = _is("near_duplicate")  # computed for those rows only: the others pass through cheaply
    old_value = " ".join(f"WHEN {literal(c)} THEN CAST({OLD}{c} AS STRING)" for c in changed)
    timestamp_format = literal(TEXT_OPTIONS["timestampFormat"])
    detail = (
        "concat('older version updated_at=',"
        f" date_format({OLD}updated_at, {timestamp_format}), ' with ', _near_column, '=',"
        f" CASE _near_column {old_value} END)"
    )
    return with_sql(
        df,
        {
            "_near_column": f"CASE WHEN {near} THEN {near_column} END",
            "_older_epoch": f"CASE WHEN {near} THEN {older_epoch} END",
        },
        {
            **{OLD + name: f"CASE WHEN {near} THEN {sql} END" for name, sql in changed.items()},
            OLD + "updated_at": f"CASE WHEN {near} THEN timestamp_seconds(_older_epoch) END",
        },
        {"_near_detail": f"CASE WHEN {near} THEN {detail} END"},
    )


# --- malformed text lines ------------------------------------------------------------------


def csv_line(columns: list[str]) -> Column:
    """The CSV text of a row, formatted exactly as the readers expect (TEXT_OPTIONS)."""
    return F.to_csv(F.struct(*[F.col(c) for c in columns]), TEXT_OPTIONS)


def json_line(columns: list[str]) -> Column:
    """The JSON-lines text of a row (null fields omitted, which readers load as null)."""
    return F.to_json(F.struct(*[F.col(c) for c in columns]), TEXT_OPTIONS)


def with_garbage_line(df: DataFrame, spec: EntityDefects, plan: GenerationPlan) -> DataFrame:
    """Add ``_garbage``: a line unreadable as CSV and as JSON (so one line fits both files).

    Variants: the row's CSV line cut after 2..n-2 fields (too few fields; not JSON); the CSV
    line with two extra fields (too many; not JSON); the row's JSON object cut inside one of
    its first 2..n-2 fields (not JSON; as CSV its first field is no number and it has too few
    fields); a line of noise. No generated value contains a comma, so every variant's field
    count is certain. None is empty, and none starts with '#' (the CSV comment marker).
    """
    variant = _variant(plan, spec, 4)
    u = _u(plan, spec, "garbage")
    keep = f"2 + {below(u, len(spec.columns) - 3)}"
    malformed = F.col(DEFECT) == "malformed_line"  # built for those rows only
    df = df.withColumns(
        {
            "_csv": F.when(malformed, csv_line(spec.columns)),
            "_json": F.when(malformed, json_line(spec.columns)),
        }
    )
    json_fields = f"array_join(slice(split(_json, ','), 1, {keep}), ',')"
    cut_json = f"substring({json_fields}, 1, length({json_fields}) - 1 - {below(u, 3)})"
    noise = f"concat('PARTIAL WRITE ', hex(xxhash64({spec.key}, {stream_id(plan.seed, 'noise')}L)))"
    line = (
        f"CASE {variant} WHEN 0 THEN array_join(slice(split(_csv, ','), 1, {keep}), ',')"
        " WHEN 1 THEN concat(_csv, ',,EXTRA')"
        f" WHEN 2 THEN {cut_json}"
        f" ELSE {noise} END"
    )
    return with_sql(df, {"_garbage": line})


# --- the whole entity ----------------------------------------------------------------------


@dataclass(frozen=True)
class DefectOutput:
    shared: DataFrame  # one row per key: everything the outputs below select from
    rows: DataFrame  # raw schema, defects planted, duplicates included
    truth: DataFrame  # DEFECT_TRUTH rows for this entity
    malformed_lines: DataFrame  # [value string]


def annotate_defects(
    clean: DataFrame, entity: str, plan: GenerationPlan, keep: Sequence[str] = ()
) -> DataFrame:
    """Clean rows with their defect planted and everything the outputs need, one row per key.

    Columns: the raw columns with value defects applied, ``_defect``, the older version
    (``_old_*``), ``_garbage``, ``_truth_column``/``_truth_detail``, and the ``keep`` columns
    passed through (the entity's ground truth). Rows carry at most one defect, so the clean
    values are still there for exact copies, older versions and garbage lines.
    """
    spec = ENTITY_DEFECTS[entity]
    raw = [F.col(f.name).cast(f.dataType) for f in RAW_SCHEMAS[entity].fields]
    annotated = (
        clean.select(*raw, *keep)
        .transform(mark_defects, spec, plan)
        .transform(with_garbage_line, spec, plan)
        .transform(codegen_boundary)
        .transform(with_older_version, spec, plan)
        .transform(codegen_boundary)
        .transform(apply_value_defects, spec, plan)
        .transform(codegen_boundary)
    )
    annotated = with_sql(
        annotated,
        {
            "_truth_column": f"CASE WHEN {_is('near_duplicate')} THEN _near_column"
            f" WHEN {DEFECT} IN ({', '.join(literal(k) for k in VALUE_DEFECTS)})"
            " THEN _defect_column END",
            "_truth_detail": f"CASE {DEFECT} WHEN 'near_duplicate' THEN _near_detail"
            " WHEN 'exact_duplicate' THEN 'identical extra copy'"
            " WHEN 'malformed_line' THEN _garbage ELSE _defect_detail END",
        },
    )
    older = [c for c in annotated.columns if c.startswith(OLD)]
    return annotated.select(
        *spec.columns, *keep, DEFECT, *older, "_garbage", "_truth_column", "_truth_detail"
    )


def plant_defects(
    clean: DataFrame, entity: str, plan: GenerationPlan, keep: Sequence[str] = ()
) -> DefectOutput:
    """Split clean rows into written rows, the entity's defect truth and its garbage lines.

    Every output selects from one annotated frame (``shared``): no unions, whose analysis is
    slow on plans this size, and one frame to cache when several outputs are written. Exact and
    near duplicates are a second version of their row (an explode over ``array(0, 1)``), so
    they sit next to the original in the files. The filters on ``_defect`` depend on the key
    only, so without a cache Spark evaluates them first and computes the truth details and
    garbage lines only where they match.
    """
    spec = ENTITY_DEFECTS[entity]
    shared = annotate_defects(clean, entity, plan, keep)
    copies = f"CASE WHEN {DEFECT} IN ('exact_duplicate', 'near_duplicate')"
    copies += " THEN array(0, 1) ELSE array(0) END"
    versions = shared.withColumn("_version", F.explode(F.expr(copies)))
    older = f"_version = 1 AND {_is('near_duplicate')}"
    rows = versions.select(
        *[
            F.expr(f"CASE WHEN {older} THEN {OLD}{c} ELSE {c} END").alias(c)
            if OLD + c in shared.columns
            else F.col(c)
            for c in spec.columns
        ]
    )
    truth = shared.filter(f"{DEFECT} IS NOT NULL").select(
        F.lit(entity).alias("entity"),
        F.expr(f"CASE WHEN {_is('malformed_line')} THEN NULL ELSE {spec.key} END")
        .cast("long")
        .alias("record_id"),
        F.col(DEFECT).alias("defect"),
        F.col("_truth_column").alias("column"),
        F.col("_truth_detail").alias("detail"),
    )
    malformed = shared.filter(_is("malformed_line")).select(F.col("_garbage").alias("value"))
    return DefectOutput(shared, rows, truth, malformed)
