"""Bronze -> silver: standardise, deduplicate, check declared rules, quarantine what fails.

Every step is a pure ``DataFrame -> DataFrame`` function composed with ``DataFrame.transform``;
the rules themselves are data (``rules.py``) applied by one engine, :func:`apply_rules`. Per
entity the steps build one *classified* frame holding every bronze row exactly once with its
outcome, and silver, quarantine and duplicates are disjoint filters of it. That is what makes
the accounting identity hold by construction:

    rows in (bronze) = silver rows + quarantined rows + duplicates removed     (per entity)

:func:`build_silver` does no I/O and runs no Spark job (except in strict mode); the pipeline
writes the frames of the returned :class:`SilverResult` and prints ``result.counts()``.
:func:`score_against_truth` measures the rules against the generator's planted defects.
Rules, policies and measured scores: docs/quality.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from sparkmart.batch.ingest import ERRORS_COLUMN, INGESTED_AT_COLUMN, RAW_COLUMN, SOURCE_COLUMN
from sparkmart.batch.rules import (
    ERROR,
    MALFORMED_RULE,
    REFERENCES,
    REPAIR,
    QualityParams,
    Rule,
    entity_rules,
    exists_flag,
    ingest_reasons,
)
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS

REPAIRS_COLUMN = "_repairs"
FAILED_COLUMN = "_failed"  # error-level rules (or ingest errors) a row fails
DUPLICATE_COLUMN = "_duplicate"  # null, or why the row was removed as a duplicate
CONTENT_COLUMN = "_content"  # the standardised row as JSON: equality and deterministic order
OUTCOME_COLUMN = "_outcome"

SILVER = "silver"
QUARANTINED = "quarantined"
DUPLICATE = "duplicate"
EXACT_DUPLICATE = "exact_duplicate"  # identical to a kept row in every column
SUPERSEDED = "superseded"  # same key, an older (or tie-broken) version
SILVER_LINEAGE = (SOURCE_COLUMN, INGESTED_AT_COLUMN, REPAIRS_COLUMN)

QUARANTINE_SCHEMA = StructType(
    [
        StructField("entity", StringType(), False),
        StructField("record_id", LongType(), True),
        StructField("rules", ArrayType(StringType()), False),
        StructField("reason", StringType(), False),
        StructField(SOURCE_COLUMN, StringType(), True),
        StructField(RAW_COLUMN, StringType(), True),
        StructField(INGESTED_AT_COLUMN, TimestampType(), True),
    ]
)
DUPLICATES_SCHEMA = StructType(
    [
        StructField("entity", StringType(), False),
        StructField("record_id", LongType(), True),
        StructField("duplicate", StringType(), False),  # exact_duplicate | superseded
        StructField(SOURCE_COLUMN, StringType(), True),
        StructField(RAW_COLUMN, StringType(), True),
        StructField(INGESTED_AT_COLUMN, TimestampType(), True),
    ]
)

Transform = Callable[[DataFrame], DataFrame]


def _has_ingest_errors() -> Column:
    return F.coalesce(F.size(F.col(ERRORS_COLUMN)) > 0, F.lit(False))


def _string_array(items: Sequence[Column]) -> Column:
    """Non-null items as array<string> (an empty list gives an empty array, not array<null>)."""
    if not items:
        return F.array().cast("array<string>")
    return F.array_compact(F.array(*items)).cast("array<string>")


# --- step 1: keep the row as it arrived ----------------------------------------------------


def keep_raw_row(entity: str) -> Transform:
    """``_raw``: the unparsed text, or the row's values as JSON before any change.

    Quarantine and duplicates carry it, so a rejected row can be inspected and replayed as it
    was received, not as standardisation left it.
    """
    columns = RAW_SCHEMAS[entity].fieldNames()

    def keep(df: DataFrame) -> DataFrame:
        as_json = F.to_json(F.struct(*[F.col(c) for c in columns]))
        return df.withColumn(RAW_COLUMN, F.coalesce(F.col(RAW_COLUMN), as_json))

    return keep


# --- step 2: standardisation ---------------------------------------------------------------


def clean_text(value: Column) -> Column:
    """Trim, collapse inner whitespace; an empty string is a missing value."""
    collapsed = F.regexp_replace(F.trim(value), r"\s+", " ")
    return F.when(collapsed != "", collapsed)


def normalise_phone(value: Column) -> Column:
    """``+1-ddd-ddd-dddd`` for 10 digits (or 11 starting with 1) in phone punctuation only.

    Anything else (letters, too few digits) is left as it is for ``phone_format`` to reject.
    The digits and the original travel in one string ("digits|phone") so each regular
    expression runs once per row: Spark does not share a subexpression across CASE WHEN
    branches, and the per-branch version stripped the digits up to six times per phone
    (2.4x the time at ``medium``, docs/optimizations.md).
    """
    digits = F.regexp_replace(value, "[^0-9]", "")
    both = F.concat(digits, F.lit("|"), value)
    formatted = F.regexp_replace(both, r"(?s)^1?([0-9]{3})([0-9]{3})([0-9]{4})\|.*$", "+1-$1-$2-$3")
    phone_or_original = F.regexp_replace(formatted, r"^[0-9]*\|", "")
    return F.when(value.rlike(r"^[0-9+().\s-]+$"), phone_or_original).otherwise(value)


def _lookup(mapping: Mapping[str, str], key: Column, fallback: Column) -> Column:
    if not mapping:
        return fallback
    pairs = [F.lit(part) for item in sorted(mapping.items()) for part in item]
    return F.coalesce(F.element_at(F.create_map(*pairs), key), fallback)


def standardise_country(value: Column, params: QualityParams) -> Column:
    """Canonical country name through the (case-insensitive) map; unknown names kept."""
    return _lookup(params.canonical_countries, F.lower(value), value)


def standardise_category(value: Column, params: QualityParams) -> Column:
    """Lower case, runs of other characters -> '_', then aliases -> canonical category."""
    token = F.regexp_replace(F.regexp_replace(F.lower(value), "[^a-z0-9]+", "_"), "^_+|_+$", "")
    return _lookup(params.canonical_categories, token, token)


def standardise(entity: str, params: QualityParams) -> Transform:
    """One spelling per value, so checks and deduplication compare like with like.

    Trims every string, then per column: lower-case emails, statuses and payment methods, one
    phone format, canonical countries and categories. Not recorded as a repair: the value
    means the same after it.
    """
    schema = RAW_SCHEMAS[entity]
    special: dict[str, Callable[[Column], Column]] = {
        "email": F.lower,
        "phone": normalise_phone,
        "country": lambda c: standardise_country(c, params),
        "category": lambda c: standardise_category(c, params),
        "status": F.lower,
        "payment_method": F.lower,
    }

    strings = [f.name for f in schema.fields if isinstance(f.dataType, StringType)]

    def apply(df: DataFrame) -> DataFrame:
        # Two projections: the per-column functions refer to the cleaned value several times,
        # and a column reference keeps the expression tree (and the plan) small.
        cleaned = df.withColumns({name: clean_text(F.col(name)) for name in strings})
        return cleaned.withColumns(
            {name: special[name](F.col(name)) for name in strings if name in special}
        )

    return apply


# --- step 3: deduplication -----------------------------------------------------------------


def mark_duplicates(entity: str) -> Transform:
    """``_duplicate``: exact copies, then older versions of a key (latest ``updated_at`` wins).

    One window per key, ordered by updated_at (latest first, nulls last), then by the row's
    content and source: deterministic, and the same winner whatever format the data came in.
    Identical rows sort next to each other, so a row equal to its predecessor is an exact
    duplicate; any other row after the first of its key is superseded. Rows without a key are
    never superseded (only exact copies among them are removed); rows with ingest errors take
    no part (their values are not trustworthy) and go to quarantine.
    """
    columns = RAW_SCHEMAS[entity].fieldNames()
    key = F.col(PRIMARY_KEYS[entity])

    def mark(df: DataFrame) -> DataFrame:
        content = F.to_json(F.struct(*[F.col(c) for c in columns]))
        has_errors = _has_ingest_errors()
        by_key = Window.partitionBy(has_errors, key).orderBy(
            F.col("updated_at").desc_nulls_last(),
            F.col(CONTENT_COLUMN).asc(),
            F.col(SOURCE_COLUMN).asc_nulls_last(),
        )
        previous = F.lag(CONTENT_COLUMN).over(by_key)
        duplicate = (
            F.when(has_errors, F.lit(None))
            .when(previous == F.col(CONTENT_COLUMN), F.lit(EXACT_DUPLICATE))
            .when(key.isNotNull() & (F.row_number().over(by_key) > 1), F.lit(SUPERSEDED))
        )
        return (
            df.withColumn(CONTENT_COLUMN, content)
            .withColumn(DUPLICATE_COLUMN, duplicate.cast("string"))
            .drop(CONTENT_COLUMN)
        )

    return mark


# --- step 4: referential flags -------------------------------------------------------------


def known_keys(entity: str, bronze: DataFrame) -> DataFrame:
    """Keys an entity's bronze holds: every row with a key except unparseable lines.

    A row quarantined for a bad value still *exists*, so orders pointing at it are not orphans;
    only a malformed line's partially parsed key is not trusted.
    """
    key = PRIMARY_KEYS[entity]
    malformed = F.coalesce(F.array_contains(F.col(ERRORS_COLUMN), MALFORMED_RULE), F.lit(False))
    return bronze.filter(~malformed & F.col(key).isNotNull()).select(key).distinct()


def with_reference_flags(references: Mapping[str, DataFrame]) -> Transform:
    """``_exists_<fk>`` per foreign key column: true when the key is known or the fk is null.

    ``references`` maps a foreign-key column to a one-column DataFrame of the known keys.
    """

    def flag(df: DataFrame) -> DataFrame:
        for column, keys in references.items():
            name = exists_flag(column)
            found = keys.select(F.col(keys.columns[0]).alias(column)).distinct()
            df = df.join(found.withColumn(name, F.lit(True)), on=column, how="left").withColumn(
                name, F.coalesce(F.col(name), F.col(column).isNull())
            )
        return df

    return flag


# --- step 5: the rule engine ---------------------------------------------------------------


def apply_rules(rules: Sequence[Rule]) -> Transform:
    """Evaluate every rule on the incoming values; record failures; apply repair fixes.

    Adds ``_failed`` (error rules failed, or the ingest errors for rows that failed ingestion)
    and ``_repairs`` (repair rules failed). A check that is null passes. Fixes of repair rules
    are applied after all checks ran; when two fix one column, the earlier rule wins.
    """

    def apply(df: DataFrame) -> DataFrame:
        failed = {rule.name: ~F.coalesce(rule.check, F.lit(True)) for rule in rules}
        errors = [F.when(failed[r.name], F.lit(r.name)) for r in rules if r.criticality == ERROR]
        repairs = [F.when(failed[r.name], F.lit(r.name)) for r in rules if r.criticality == REPAIR]
        fixed: dict[str, Column] = {}
        for rule in reversed([r for r in rules if r.criticality == REPAIR]):
            for column, value in rule.fix.items():
                current = fixed.get(column, F.col(column))
                fixed[column] = F.when(failed[rule.name], value).otherwise(current)
        has_errors = _has_ingest_errors()
        types = {f.name: f.dataType for f in df.schema.fields}
        return df.withColumns(
            {
                **{c: value.cast(types[c]) for c, value in fixed.items()},
                FAILED_COLUMN: F.when(has_errors, F.col(ERRORS_COLUMN)).otherwise(
                    _string_array(errors)
                ),
                REPAIRS_COLUMN: F.when(has_errors, _string_array([])).otherwise(
                    _string_array(repairs)
                ),
            }
        )

    return apply


def with_outcome(df: DataFrame) -> DataFrame:
    """``_outcome``: duplicate, quarantined or silver (in that precedence)."""
    outcome = (
        F.when(F.col(DUPLICATE_COLUMN).isNotNull(), F.lit(DUPLICATE))
        .when(F.size(F.col(FAILED_COLUMN)) > 0, F.lit(QUARANTINED))
        .otherwise(F.lit(SILVER))
    )
    return df.withColumn(OUTCOME_COLUMN, outcome)


def classify(
    entity: str,
    bronze: DataFrame,
    rules: Sequence[Rule],
    params: QualityParams,
    references: Mapping[str, DataFrame] | None = None,
) -> DataFrame:
    """Every bronze row of one entity, standardised, checked, with its outcome."""
    columns = RAW_SCHEMAS[entity].fieldNames()
    return (
        bronze.transform(keep_raw_row(entity))
        .transform(standardise(entity, params))
        .transform(mark_duplicates(entity))
        .transform(with_reference_flags(references or {}))
        .transform(apply_rules(rules))
        .transform(with_outcome)
        .select(
            *columns,
            SOURCE_COLUMN,
            INGESTED_AT_COLUMN,
            RAW_COLUMN,
            ERRORS_COLUMN,
            DUPLICATE_COLUMN,
            FAILED_COLUMN,
            REPAIRS_COLUMN,
            OUTCOME_COLUMN,
        )
    )


# --- outputs of the classified frame -------------------------------------------------------


def silver_rows(entity: str, classified: DataFrame) -> DataFrame:
    """Rows that passed: the raw schema's columns + ``_source``, ``_ingested_at``, ``_repairs``."""
    schema = RAW_SCHEMAS[entity]
    return classified.filter(F.col(OUTCOME_COLUMN) == SILVER).select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields], *SILVER_LINEAGE
    )


def _record_id(entity: str) -> Column:
    """The business key, or null for an unparseable line (its partial key is not trusted)."""
    malformed = F.coalesce(F.array_contains(F.col(ERRORS_COLUMN), MALFORMED_RULE), F.lit(False))
    return F.when(~malformed, F.col(PRIMARY_KEYS[entity])).cast("long")


def rule_reasons(entity: str, rules: Sequence[Rule]) -> dict[str, str]:
    """Readable text per rule name, ingest errors included."""
    return {**ingest_reasons(entity), **{r.name: r.reason for r in rules}}


def quarantine_rows(entity: str, classified: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    """Rows that failed an error rule or ingestion, in QUARANTINE_SCHEMA, with readable reasons."""
    pairs = [F.lit(part) for item in rule_reasons(entity, rules).items() for part in item]
    reason_map = F.create_map(*pairs)
    reason = F.concat_ws(
        "; ",
        F.transform(F.col(FAILED_COLUMN), lambda r: F.coalesce(F.element_at(reason_map, r), r)),
    )
    rows = classified.filter(F.col(OUTCOME_COLUMN) == QUARANTINED).select(
        F.lit(entity).alias("entity"),
        _record_id(entity).alias("record_id"),
        F.col(FAILED_COLUMN).alias("rules"),
        reason.alias("reason"),
        SOURCE_COLUMN,
        RAW_COLUMN,
        INGESTED_AT_COLUMN,
    )
    return _conform(rows, QUARANTINE_SCHEMA)


def duplicate_rows(entity: str, classified: DataFrame) -> DataFrame:
    """Rows removed as duplicates, in DUPLICATES_SCHEMA (kept for audit, not silently lost)."""
    rows = classified.filter(F.col(OUTCOME_COLUMN) == DUPLICATE).select(
        F.lit(entity).alias("entity"),
        _record_id(entity).alias("record_id"),
        F.col(DUPLICATE_COLUMN).alias("duplicate"),
        SOURCE_COLUMN,
        RAW_COLUMN,
        INGESTED_AT_COLUMN,
    )
    return _conform(rows, DUPLICATES_SCHEMA)


def _conform(df: DataFrame, schema: StructType) -> DataFrame:
    """Select ``schema``'s columns in order with its types (every entity unions alike)."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _union(frames: Iterable[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


# --- counts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityCount:
    """Where one entity's bronze rows went."""

    entity: str
    rows_in: int
    silver: int
    quarantined: int
    exact_duplicates: int
    superseded: int
    repaired: int  # silver rows with at least one repair

    @property
    def duplicates(self) -> int:
        return self.exact_duplicates + self.superseded

    @property
    def balanced(self) -> bool:
        """rows in = silver + quarantined + duplicates removed."""
        return self.rows_in == self.silver + self.quarantined + self.duplicates


@dataclass(frozen=True)
class RuleCount:
    """How many rows one rule (or ingest error) sent to quarantine or repaired."""

    entity: str
    rule: str
    criticality: str
    rows: int  # error rules: quarantined rows failing it; repair rules: silver rows repaired


class AccountingError(RuntimeError):
    """Rows were lost or invented between bronze and silver + quarantine + duplicates."""


@dataclass(frozen=True)
class QualityCounts:
    """Counts of one run: per entity and per rule (error and repair)."""

    entities: list[EntityCount]
    rules: list[RuleCount]

    @property
    def balanced(self) -> bool:
        return all(e.balanced for e in self.entities)

    def check(self) -> QualityCounts:
        """Raise AccountingError naming the entity when the identity does not hold."""
        for e in self.entities:
            if not e.balanced:
                raise AccountingError(
                    f"{e.entity}: {e.rows_in} rows in but {e.silver} silver + {e.quarantined} "
                    f"quarantined + {e.duplicates} duplicates = "
                    f"{e.silver + e.quarantined + e.duplicates}"
                )
        return self

    def rule_rows(self) -> list[dict[str, object]]:
        """Rule counts as plain dicts (for the audit tables and JSON summaries)."""
        return [vars(r).copy() for r in self.rules]

    def entity_rows(self) -> list[dict[str, object]]:
        """Entity counts as plain dicts, with the derived duplicates and balanced fields."""
        return [
            {**vars(e), "duplicates": e.duplicates, "balanced": e.balanced} for e in self.entities
        ]

    def format(self) -> str:
        """A plain-text table for the run summary."""
        lines = [
            f"{'entity':<10} {'rows in':>10} {'silver':>10} {'quarantined':>12} "
            f"{'exact dup':>10} {'superseded':>10} {'repaired':>10}  balanced"
        ]
        for e in self.entities:
            lines.append(
                f"{e.entity:<10} {e.rows_in:>10,} {e.silver:>10,} {e.quarantined:>12,} "
                f"{e.exact_duplicates:>10,} {e.superseded:>10,} {e.repaired:>10,}  "
                f"{'yes' if e.balanced else 'NO'}"
            )
        lines.append("")
        lines.append(f"{'entity':<10} {'rule':<32} {'criticality':<12} {'rows':>10}")
        for r in self.rules:
            lines.append(f"{r.entity:<10} {r.rule:<32} {r.criticality:<12} {r.rows:>10,}")
        return "\n".join(lines)


# --- the result ----------------------------------------------------------------------------


@dataclass
class SilverResult:
    """The classified frames per entity and the views the pipeline writes.

    Nothing is computed until an output is written or counted. Writing silver, quarantine and
    duplicates and counting each re-runs the plan; call :meth:`persist` first to compute the
    classified rows once.
    """

    params: QualityParams
    bronze: dict[str, DataFrame]
    classified: dict[str, DataFrame]
    rules: dict[str, list[Rule]]
    _persisted: list[DataFrame] = field(default_factory=list, repr=False)

    @property
    def entities(self) -> list[str]:
        return [e for e in ENTITIES if e in self.classified]

    @property
    def silver(self) -> dict[str, DataFrame]:
        return {e: silver_rows(e, self.classified[e]) for e in self.entities}

    @property
    def quarantine(self) -> DataFrame:
        """All entities' quarantined rows in QUARANTINE_SCHEMA."""
        return _union(quarantine_rows(e, self.classified[e], self.rules[e]) for e in self.entities)

    @property
    def duplicates(self) -> DataFrame:
        """All entities' removed duplicates in DUPLICATES_SCHEMA."""
        return _union(duplicate_rows(e, self.classified[e]) for e in self.entities)

    def persist(self, level: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> SilverResult:
        """Compute each classified frame once for all outputs and counts."""
        for entity in self.entities:
            self.classified[entity] = self.classified[entity].persist(level)
            self._persisted.append(self.classified[entity])
        return self

    def unpersist(self) -> None:
        for frame in self._persisted:
            frame.unpersist()
        self._persisted.clear()

    def counts(self) -> QualityCounts:
        """Rows per outcome and per rule (two small Spark jobs; zero-count rules included)."""
        rows_in = {
            row["entity"]: row["rows"]
            for row in _union(
                self.bronze[e].select(F.lit(e).alias("entity")) for e in self.entities
            )
            .groupBy("entity")
            .agg(F.count(F.lit(1)).alias("rows"))
            .collect()
        }
        summary = (
            _union(
                self.classified[e].select(
                    F.lit(e).alias("entity"),
                    OUTCOME_COLUMN,
                    DUPLICATE_COLUMN,
                    FAILED_COLUMN,
                    REPAIRS_COLUMN,
                )
                for e in self.entities
            )
            .groupBy("entity", OUTCOME_COLUMN, DUPLICATE_COLUMN, FAILED_COLUMN, REPAIRS_COLUMN)
            .agg(F.count(F.lit(1)).alias("rows"))
            .collect()
        )
        return _tally(self.entities, self.rules, rows_in, summary)

    def rule_counts(self) -> DataFrame:
        """Counts per rule as a DataFrame (entity, rule, criticality, rows) for audit tables."""
        spark = next(iter(self.classified.values())).sparkSession
        schema = "entity string, rule string, criticality string, rows long"
        return spark.createDataFrame(
            [(r.entity, r.rule, r.criticality, r.rows) for r in self.counts().rules], schema
        )


def _tally(
    entities: Sequence[str],
    rules: Mapping[str, Sequence[Rule]],
    rows_in: Mapping[str, int],
    summary: Sequence[Row],
) -> QualityCounts:
    """Fold the grouped outcome rows into entity and rule counts."""
    outcome_rows: dict[tuple[str, str], int] = {}
    duplicate_rows_by_kind: dict[tuple[str, str], int] = {}
    repaired: dict[str, int] = {}
    per_rule: dict[tuple[str, str], int] = {}
    for row in summary:
        entity, outcome, n = row["entity"], row[OUTCOME_COLUMN], row["rows"]
        outcome_rows[(entity, outcome)] = outcome_rows.get((entity, outcome), 0) + n
        if outcome == DUPLICATE:
            kind = row[DUPLICATE_COLUMN]
            duplicate_rows_by_kind[(entity, kind)] = (
                duplicate_rows_by_kind.get((entity, kind), 0) + n
            )
        elif outcome == QUARANTINED:
            for name in row[FAILED_COLUMN]:
                per_rule[(entity, name)] = per_rule.get((entity, name), 0) + n
        elif row[REPAIRS_COLUMN]:
            repaired[entity] = repaired.get(entity, 0) + n
            for name in row[REPAIRS_COLUMN]:
                per_rule[(entity, name)] = per_rule.get((entity, name), 0) + n
    entity_counts = [
        EntityCount(
            entity=e,
            rows_in=int(rows_in.get(e, 0)),
            silver=outcome_rows.get((e, SILVER), 0),
            quarantined=outcome_rows.get((e, QUARANTINED), 0),
            exact_duplicates=duplicate_rows_by_kind.get((e, EXACT_DUPLICATE), 0),
            superseded=duplicate_rows_by_kind.get((e, SUPERSEDED), 0),
            repaired=repaired.get(e, 0),
        )
        for e in entities
    ]
    rule_counts = []
    for e in entities:
        declared = {r.name for r in rules[e]}
        ingest = sorted(name for (entity, name) in per_rule if entity == e and name not in declared)
        for name in ingest:  # ingest errors first: they are checked first
            rule_counts.append(RuleCount(e, name, ERROR, per_rule[(e, name)]))
        for r in rules[e]:
            rule_counts.append(RuleCount(e, r.name, r.criticality, per_rule.get((e, r.name), 0)))
    return QualityCounts(entity_counts, rule_counts)


# --- building silver -----------------------------------------------------------------------


def build_silver(
    bronze: Mapping[str, DataFrame],
    params: QualityParams,
    extra_keys: Mapping[str, DataFrame] | None = None,
) -> SilverResult:
    """Classify every entity given (lazily): the pipeline decides what to write and count.

    Orders are checked against the customers' and products' keys found in their bronze, plus
    ``extra_keys`` (e.g. keys already in silver from earlier runs). With ``params.strict`` the
    first error-level failure raises QualityRuleError instead.
    """
    unknown = sorted(set(bronze) - set(ENTITIES))
    if unknown:
        raise ValueError(f"unknown entity(ies): {', '.join(unknown)}")
    rules = entity_rules(params)
    classified = {}
    for entity in [e for e in ENTITIES if e in bronze]:
        references = {}
        for column, target in REFERENCES.get(entity, {}).items():
            sources = []
            if target in bronze:
                sources.append(known_keys(target, bronze[target]))
            if extra_keys and target in extra_keys:
                extra = extra_keys[target]
                sources.append(extra.select(F.col(extra.columns[0]).alias(PRIMARY_KEYS[target])))
            if not sources:
                raise ValueError(
                    f"{entity}.{column} is checked against {target}: pass the {target} bronze "
                    f"or its known keys in extra_keys"
                )
            references[column] = _union(sources)
        classified[entity] = classify(entity, bronze[entity], rules[entity], params, references)
    result = SilverResult(params, dict(bronze), classified, {e: rules[e] for e in classified})
    if params.strict:
        enforce_strict(result)
    return result


# --- strict mode ---------------------------------------------------------------------------


class QualityRuleError(ValueError):
    """Strict mode: an error-level rule failed; names the entity, rule, count and an example."""

    def __init__(self, entity: str, rule: str, count: int, reason: str, example: str) -> None:
        self.entity, self.rule, self.count, self.example = entity, rule, count, example
        super().__init__(
            f"strict mode: {count:,} {entity} row(s) fail rule '{rule}' ({reason}); "
            f"first: {example}"
        )


def enforce_strict(result: SilverResult) -> None:
    """Raise on the first entity (in load order) with a quarantined row.

    The rule named is the first failing one in report order (ingest errors, then the declared
    rules); per entity one small job counts failures by rule and one fetches an example.
    """
    for entity in result.entities:
        quarantined = quarantine_rows(entity, result.classified[entity], result.rules[entity])
        failures = {
            row["rule"]: row["rows"]
            for row in quarantined.select(F.explode("rules").alias("rule"))
            .groupBy("rule")
            .agg(F.count(F.lit(1)).alias("rows"))
            .collect()
        }
        if not failures:
            continue
        declared = [r.name for r in result.rules[entity]]
        ingest = sorted(name for name in failures if name not in declared)
        rule = next(name for name in [*ingest, *declared] if name in failures)
        row = quarantined.filter(F.array_contains("rules", rule)).limit(1).collect()[0]
        example = f"record_id={row['record_id']} source={row[SOURCE_COLUMN]} raw={row[RAW_COLUMN]}"
        reasons = rule_reasons(entity, result.rules[entity])
        raise QualityRuleError(entity, rule, failures[rule], reasons.get(rule, rule), example)


# --- scoring against the generator's ground truth ------------------------------------------

# A planted defect is caught by a failed rule of one of these kinds on the defect's column.
DEFECT_RULE_KINDS: Mapping[str, tuple[str, ...]] = {
    "null_value": ("not_null",),
    "bad_email": ("format",),
    "bad_phone": ("format",),
    "bad_quantity": ("range",),
    "bad_date": ("range", "consistency"),
    "orphan_fk": ("reference",),
}
# ... or by removal as this kind of duplicate.
DEFECT_DUPLICATES: Mapping[str, str] = {
    "exact_duplicate": EXACT_DUPLICATE,
    "near_duplicate": SUPERSEDED,
}
MALFORMED_LINE = "malformed_line"
TRUTH_MATCH_COLUMNS = ("entity", "record_id", "defect", "column", "detail")


@dataclass(frozen=True)
class QualityScore:
    """Share of planted defects caught, and share of clean rows wrongly flagged."""

    planted: dict[str, int]  # defect type -> planted
    caught: dict[str, int]  # defect type -> caught
    clean_rows: int
    false_positives: int  # clean rows quarantined, repaired or removed as duplicates
    missed_examples: list[dict[str, object]]

    @property
    def caught_share(self) -> float:
        total = sum(self.planted.values())
        return sum(self.caught.values()) / total if total else 1.0

    @property
    def false_positive_share(self) -> float:
        return self.false_positives / self.clean_rows if self.clean_rows else 0.0

    def share(self, defect: str) -> float:
        planted = self.planted.get(defect, 0)
        return self.caught.get(defect, 0) / planted if planted else 1.0

    def format(self) -> str:
        lines = [f"{'defect':<16} {'planted':>8} {'caught':>8} {'share':>8}"]
        for defect in sorted(self.planted):
            lines.append(
                f"{defect:<16} {self.planted[defect]:>8,} {self.caught.get(defect, 0):>8,} "
                f"{self.share(defect):>8.2%}"
            )
        lines.append(
            f"{'all':<16} {sum(self.planted.values()):>8,} {sum(self.caught.values()):>8,} "
            f"{self.caught_share:>8.2%}"
        )
        lines.append(
            f"clean rows flagged: {self.false_positives:,} of {self.clean_rows:,} "
            f"({self.false_positive_share:.3%})"
        )
        return "\n".join(lines)


def _outcome_events(result: SilverResult) -> DataFrame:
    """(entity, record_id, rule, kind, columns) for every quarantine rule, repair and removal."""
    spark = next(iter(result.classified.values())).sparkSession
    catalogue = spark.createDataFrame(
        [
            (rule.entity, rule.name, rule.kind, list(rule.columns))
            for rules in result.rules.values()
            for rule in rules
        ],
        "entity string, rule string, kind string, columns array<string>",
    )
    events = []
    for entity in result.entities:
        frame = result.classified[entity]
        key = _record_id(entity).alias("record_id")
        outcome = F.col(OUTCOME_COLUMN)
        rules = (
            F.when(outcome == QUARANTINED, F.col(FAILED_COLUMN))
            .when(outcome == SILVER, F.col(REPAIRS_COLUMN))
            .otherwise(F.array(F.concat(F.lit("duplicate:"), F.col(DUPLICATE_COLUMN))))
        )
        events.append(
            frame.select(F.lit(entity).alias("entity"), key, F.explode(rules).alias("rule"))
        )
    return _union(events).join(F.broadcast(catalogue), ["entity", "rule"], "left")


def score_against_truth(
    result: SilverResult, defects_truth: DataFrame, malformed_lines_planted: bool = True
) -> QualityScore:
    """Caught share per defect type, and false positives among clean rows.

    A planted defect is caught when its row was quarantined or repaired by a rule of a matching
    kind on the defect's column, or removed as the matching kind of duplicate; a malformed line
    when a quarantined ``malformed_record`` row carries its exact text. Clean rows are rows whose
    key has no planted defect; each one quarantined, repaired or removed is a false positive.
    Set ``malformed_lines_planted`` to False for Parquet/Avro input (garbage lines are only
    written into the CSV and JSON files).
    """
    truth = defects_truth.filter(F.col("entity").isin(*result.entities))
    if not malformed_lines_planted:
        truth = truth.filter(F.col("defect") != MALFORMED_LINE)
    events = _outcome_events(result)

    kinds_map = F.create_map(
        *[
            part
            for defect, kinds in DEFECT_RULE_KINDS.items()
            for part in (F.lit(defect), F.array(*[F.lit(k) for k in kinds]))
        ]
    )
    duplicate_map = F.create_map(
        *[
            part
            for defect, kind in DEFECT_DUPLICATES.items()
            for part in (F.lit(defect), F.lit(f"duplicate:{kind}"))
        ]
    )
    t, e = truth.alias("t"), events.alias("e")
    matches = (
        F.array_contains(F.element_at(kinds_map, F.col("t.defect")), F.col("e.kind"))
        & F.array_contains(F.col("e.columns"), F.col("t.column"))
    ) | (F.element_at(duplicate_map, F.col("t.defect")) == F.col("e.rule"))
    keyed = t.filter(F.col("defect") != MALFORMED_LINE)
    caught_keyed = keyed.join(
        e,
        (F.col("t.entity") == F.col("e.entity"))
        & (F.col("t.record_id") == F.col("e.record_id"))
        & matches,
        "left_semi",
    )
    quarantined_text = result.quarantine.filter(F.array_contains("rules", MALFORMED_RULE)).select(
        "entity", F.col(RAW_COLUMN).alias("detail")
    )
    caught_lines = t.filter(F.col("defect") == MALFORMED_LINE).join(
        quarantined_text, ["entity", "detail"], "left_semi"
    )
    caught_all = caught_keyed.select(*TRUTH_MATCH_COLUMNS).union(
        caught_lines.select(*TRUTH_MATCH_COLUMNS)
    )
    c = caught_all.alias("c")
    same_defect = [F.col(f"t.{n}").eqNullSafe(F.col(f"c.{n}")) for n in TRUTH_MATCH_COLUMNS]
    missed_all = t.join(c, reduce(Column.__and__, same_defect), "left_anti").select(
        *TRUTH_MATCH_COLUMNS
    )
    judged = caught_all.withColumn("caught", F.lit(True)).unionByName(
        missed_all.withColumn("caught", F.lit(False))
    )
    planted: dict[str, int] = {}
    caught: dict[str, int] = {}
    for row in judged.groupBy("defect", "caught").agg(F.count(F.lit(1)).alias("n")).collect():
        planted[row["defect"]] = planted.get(row["defect"], 0) + row["n"]
        if row["caught"]:
            caught[row["defect"]] = row["n"]
    missed = missed_all.limit(20).collect() if caught != planted else []

    defect_keys = (
        truth.filter(F.col("record_id").isNotNull()).select("entity", "record_id").distinct()
    )
    rows = _union(
        result.classified[entity].select(
            F.lit(entity).alias("entity"),
            _record_id(entity).alias("record_id"),
            ((F.col(OUTCOME_COLUMN) != SILVER) | (F.size(F.col(REPAIRS_COLUMN)) > 0)).alias(
                "flagged"
            ),
        )
        for entity in result.entities
    ).filter(F.col("record_id").isNotNull())
    clean = rows.join(defect_keys, ["entity", "record_id"], "left_anti")
    totals = clean.agg(
        F.count(F.lit(1)).alias("rows"), F.sum(F.col("flagged").cast("long")).alias("flagged")
    ).first()
    return QualityScore(
        planted={k: int(v) for k, v in planted.items()},
        caught={k: int(v) for k, v in caught.items()},
        clean_rows=int(totals["rows"] or 0),
        false_positives=int(totals["flagged"] or 0),
        missed_examples=[r.asDict() for r in missed],
    )
