"""Bronze -> silver: each step on hand-made rows, then generated data scored against its truth.

Inline rows state the expected silver, quarantine and duplicate rows next to the input; the
end-to-end tests generate data with planted defects, write it in every format, read it back
through ingestion and check the share of defects caught and of clean rows wrongly flagged.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType, TimestampType
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from sparkmart.batch.ingest import read_bronze, sources_for
from sparkmart.batch.quality import (
    DUPLICATES_SCHEMA,
    QUARANTINE_SCHEMA,
    QualityRuleError,
    SilverResult,
    build_silver,
    normalise_phone,
    score_against_truth,
    standardise,
)
from sparkmart.batch.rules import QualityParams, entity_rules
from sparkmart.config import Settings
from sparkmart.generate import generate, resolve_counts, write_generated
from sparkmart.schemas import ENTITIES, RAW_SCHEMAS

D = Decimal
AS_OF = dt.datetime(2026, 1, 1)
INGESTED = dt.datetime(2026, 1, 2, 3, 0)
SOURCE = "test:inline"
PARAMS = QualityParams(as_of=AS_OF)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


CUSTOMER: dict[str, Any] = {
    "customer_id": 1,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada.lovelace1@example.com",
    "phone": "+1-555-123-4567",
    "city": "London",
    "country": "United Kingdom",
    "signup_date": dt.date(2024, 3, 1),
    "updated_at": ts("2025-01-01 10:00:00"),
}
PRODUCT: dict[str, Any] = {
    "product_id": 10,
    "name": "Voltix Pro Camera",
    "category": "electronics",
    "brand": "Voltix",
    "price": D("100.00"),
    "cost": D("60.00"),
    "stock_quantity": 5,
    "updated_at": ts("2025-01-01 10:00:00"),
}
ORDER: dict[str, Any] = {
    "order_id": 100,
    "customer_id": 1,
    "product_id": 10,
    "quantity": 2,
    "unit_price": D("100.00"),
    "discount": D("0.100"),
    "order_ts": ts("2025-02-01 09:00:00"),
    "status": "delivered",
    "payment_method": "paypal",
    "shipped_ts": ts("2025-02-02 09:00:00"),
    "delivered_ts": ts("2025-02-04 09:00:00"),
    "updated_at": ts("2025-02-04 09:00:00"),
}
BASE = {"customers": CUSTOMER, "products": PRODUCT, "orders": ORDER}


def bronze_schema(entity: str) -> StructType:
    """Bronze as ingestion builds it: every raw column nullable (a key may fail to parse)."""
    return StructType(
        [
            *[StructField(f.name, f.dataType) for f in RAW_SCHEMAS[entity].fields],
            StructField("_source", StringType()),
            StructField("_ingested_at", TimestampType()),
            StructField("_raw", StringType()),
            StructField("_errors", ArrayType(StringType())),
        ]
    )


def bronze(spark: SparkSession, entity: str, *rows: dict[str, Any]) -> DataFrame:
    """Bronze rows of ``entity``: each dict overrides the base row; ``_errors``/``_raw`` too."""
    full = []
    for changes in rows:
        row = {**BASE[entity], "_source": SOURCE, "_ingested_at": INGESTED, "_raw": None}
        row["_errors"] = []
        row.update(changes)
        full.append(row)
    schema = bronze_schema(entity)
    return spark.createDataFrame([tuple(r[n] for n in schema.fieldNames()) for r in full], schema)


def silver_frame(spark: SparkSession, entity: str, *rows: dict[str, Any]) -> DataFrame:
    """Expected silver rows: base row + overrides + ``_repairs`` (default none)."""
    schema = StructType(
        [
            *RAW_SCHEMAS[entity].fields,
            StructField("_source", StringType()),
            StructField("_ingested_at", TimestampType()),
            StructField("_repairs", ArrayType(StringType())),
        ]
    )
    data = []
    for changes in rows:
        row = {**BASE[entity], "_source": SOURCE, "_ingested_at": INGESTED, "_repairs": []}
        row.update(changes)
        data.append(tuple(row[n] for n in schema.fieldNames()))
    return spark.createDataFrame(data, schema)


def quarantine_frame(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Expected quarantine rows as (entity, record_id, rules) — reason and raw checked apart."""
    return spark.createDataFrame(rows, "entity string, record_id long, rules array<string>")


def just_rules(result: SilverResult) -> DataFrame:
    return result.quarantine.select("entity", "record_id", "rules")


# --- standardisation -----------------------------------------------------------------------


def test_standardise_trims_lowercases_and_maps(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        "customers",
        {"first_name": "  Ada  ", "email": " Ada.Lovelace1@EXAMPLE.com ", "country": " usa"},
        {"customer_id": 2, "last_name": "Van  der Berg", "country": "The Netherlands"},
        {"customer_id": 3, "city": "   ", "country": "Atlantis"},
        {"customer_id": 4, "country": "UNITED KINGDOM"},
    )
    out = rows.transform(standardise("customers", PARAMS)).select(
        "customer_id", "first_name", "last_name", "email", "city", "country"
    )
    expected = [
        Row(1, "Ada", "Lovelace", "ada.lovelace1@example.com", "London", "USA"),
        Row(2, "Ada", "Van der Berg", "ada.lovelace1@example.com", "London", "Netherlands"),
        Row(3, "Ada", "Lovelace", "ada.lovelace1@example.com", None, "Atlantis"),
        Row(4, "Ada", "Lovelace", "ada.lovelace1@example.com", "London", "United Kingdom"),
    ]
    assertDataFrameEqual(out, spark.createDataFrame(expected, out.schema))


def test_phones_of_the_same_digits_get_one_format(spark: SparkSession) -> None:
    phones = [
        ("+1-555-123-4567", "+1-555-123-4567"),
        ("(555) 123-4567", "+1-555-123-4567"),
        ("+1 555 123 4567", "+1-555-123-4567"),
        ("1.555.123.4567", "+1-555-123-4567"),
        ("5551234567", "+1-555-123-4567"),
        ("+1-555-123", "+1-555-123"),  # too few digits: left for phone_format to reject
        ("+1-555-TBD", "+1-555-TBD"),
        ("555-123-4567 ext 9", "555-123-4567 ext 9"),  # letters: not guessed
    ]
    df = spark.createDataFrame(phones, "given string, expected string")
    assertDataFrameEqual(
        df.select(normalise_phone(F.col("given")).alias("phone")),
        df.select(F.col("expected").alias("phone")),
    )


def test_categories_map_to_canonical_forms(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        "products",
        {"category": "Home & Garden"},
        {"product_id": 11, "category": " Jewellery "},
        {"product_id": 12, "category": "ELECTRONICS"},
        {"product_id": 13, "category": "Pet Food"},
    )
    out = rows.transform(standardise("products", PARAMS)).select("product_id", "category")
    expected = [(10, "home_garden"), (11, "jewelry"), (12, "electronics"), (13, "pet_food")]
    assertDataFrameEqual(out, spark.createDataFrame(expected, out.schema))


def test_unknown_category_is_repaired_not_quarantined(spark: SparkSession) -> None:
    result = build_silver({"products": bronze(spark, "products", {"category": "Pet Food"})}, PARAMS)
    expected = silver_frame(
        spark, "products", {"category": "uncategorized", "_repairs": ["category_known"]}
    )
    assertDataFrameEqual(result.silver["products"], expected)


# --- deduplication -------------------------------------------------------------------------


def test_dedupe_keeps_the_latest_version_and_drops_exact_copies(spark: SparkSession) -> None:
    older = {"email": "ada.old1@example.com", "updated_at": ts("2024-06-01 00:00:00")}
    latest = {"updated_at": ts("2025-03-01 00:00:00")}
    tie_a = {"customer_id": 2, "city": "Berlin"}
    tie_b = {"customer_id": 2, "city": "Paris"}  # same updated_at: content decides
    rows = [older, latest, dict(latest), tie_b, tie_a]
    for order in (rows, list(reversed(rows))):  # the winner does not depend on input order
        result = build_silver({"customers": bronze(spark, "customers", *order)}, PARAMS)
        assertDataFrameEqual(
            result.silver["customers"], silver_frame(spark, "customers", latest, tie_a)
        )
        assertDataFrameEqual(
            result.duplicates.select("entity", "record_id", "duplicate"),
            spark.createDataFrame(
                [
                    ("customers", 1, "exact_duplicate"),
                    ("customers", 1, "superseded"),
                    ("customers", 2, "superseded"),
                ],
                "entity string, record_id long, duplicate string",
            ),
        )
    assertSchemaEqual(result.duplicates.schema, DUPLICATES_SCHEMA)


def test_latest_version_wins_even_when_it_is_invalid(spark: SparkSession) -> None:
    """The stale valid version must not slip into silver: it is superseded, the latest fails."""
    rows = bronze(
        spark,
        "customers",
        {"updated_at": ts("2024-01-01 00:00:00")},
        {"email": "not-an-email", "updated_at": ts("2025-01-01 00:00:00")},
    )
    result = build_silver({"customers": rows}, PARAMS)
    assert result.silver["customers"].count() == 0
    assertDataFrameEqual(
        just_rules(result), quarantine_frame(spark, [("customers", 1, ["email_format"])])
    )
    assert [r.duplicate for r in result.duplicates.collect()] == ["superseded"]


# --- nulls: required -> quarantine, imputed -> repaired ------------------------------------


def test_nulls_are_imputed_or_quarantined_by_policy(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        "customers",
        {"customer_id": 1, "first_name": None, "country": None},
        {"customer_id": 2, "phone": None},
        {"customer_id": 3, "phone": "n/a"},
        {"customer_id": 4, "email": None},
        {"customer_id": 5, "signup_date": None},
    )
    result = build_silver({"customers": rows}, PARAMS)
    expected_silver = silver_frame(
        spark,
        "customers",
        {
            "customer_id": 1,
            "first_name": "Unknown",
            "country": "Unknown",
            "_repairs": ["first_name_missing", "country_missing"],
        },
        {"customer_id": 2, "phone": None, "_repairs": ["phone_missing"]},
        {"customer_id": 3, "phone": None, "_repairs": ["phone_format"]},
    )
    assertDataFrameEqual(result.silver["customers"], expected_silver)
    assertDataFrameEqual(
        just_rules(result),
        quarantine_frame(
            spark,
            [
                ("customers", 4, ["email_required"]),
                ("customers", 5, ["signup_date_required"]),
            ],
        ),
    )


def test_order_discount_defaults_to_zero(spark: SparkSession) -> None:
    run = {
        "customers": bronze(spark, "customers", {}),
        "products": bronze(spark, "products", {}),
        "orders": bronze(spark, "orders", {"discount": None, "payment_method": "  PayPal "}),
    }
    result = build_silver(run, PARAMS)
    expected = silver_frame(
        spark, "orders", {"discount": D("0.000"), "_repairs": ["discount_missing"]}
    )
    assertDataFrameEqual(result.silver["orders"], expected)


# --- validity ------------------------------------------------------------------------------


def test_each_invalid_order_fails_exactly_its_rule(spark: SparkSession) -> None:
    bad = [
        {"order_id": 1, "quantity": 0},
        {"order_id": 2, "unit_price": D("-1.00")},
        {"order_id": 3, "discount": D("1.500")},
        {"order_id": 4, "order_ts": ts("1903-05-01 00:00:00")},
        {  # in the future: after the as-of time and after its own updates
            "order_id": 5,
            "order_ts": ts("2027-06-01 00:00:00"),
        },
        {"order_id": 6, "shipped_ts": ts("2025-01-01 00:00:00")},  # shipped before ordered
        {"order_id": 7, "status": "lost"},
        {"order_id": 8, "updated_at": ts("2026-02-01 00:00:00")},
        {"order_id": 9},  # valid
    ]
    run = {
        "customers": bronze(spark, "customers", {}),
        "products": bronze(spark, "products", {}),
        "orders": bronze(spark, "orders", *bad),
    }
    result = build_silver(run, PARAMS)
    assertDataFrameEqual(
        just_rules(result),
        quarantine_frame(
            spark,
            [
                ("orders", 1, ["quantity_positive"]),
                ("orders", 2, ["unit_price_non_negative"]),
                ("orders", 3, ["discount_in_range"]),
                ("orders", 4, ["order_ts_in_range"]),
                ("orders", 5, ["order_ts_in_range", "order_timeline"]),
                ("orders", 6, ["order_timeline"]),
                ("orders", 7, ["status_known"]),
                ("orders", 8, ["updated_at_not_future"]),
            ],
        ),
    )
    assert [r.order_id for r in result.silver["orders"].collect()] == [9]


def test_customer_dates_and_emails_are_checked(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        "customers",
        {"customer_id": 1, "signup_date": dt.date(1905, 1, 1)},
        {"customer_id": 2, "email": "ada lovelace@example.com"},
        {"customer_id": 3, "email": "ada@@example.com"},
        {"customer_id": 4, "email": "ada@"},
        {"customer_id": 5, "signup_date": dt.date(2026, 6, 1)},  # after the as-of date
    )
    result = build_silver({"customers": rows}, PARAMS)
    assertDataFrameEqual(
        just_rules(result),
        quarantine_frame(
            spark,
            [
                ("customers", 1, ["signup_date_in_range"]),
                ("customers", 2, ["email_format"]),
                ("customers", 3, ["email_format"]),
                ("customers", 4, ["email_format"]),
                ("customers", 5, ["signup_date_in_range"]),
            ],
        ),
    )


# --- referential checks --------------------------------------------------------------------


def test_orphans_are_quarantined_but_orders_of_quarantined_customers_are_not(
    spark: SparkSession,
) -> None:
    customers = bronze(
        spark,
        "customers",
        {"customer_id": 1, "email": "broken"},  # quarantined, yet it exists
        {"customer_id": 2},
        {  # an unparseable line's partial key is not trusted
            "customer_id": 3,
            "email": None,
            "_errors": ["malformed_record"],
            "_raw": "3,Ada",
        },
    )
    orders = bronze(
        spark,
        "orders",
        {"order_id": 100, "customer_id": 1},
        {"order_id": 101, "customer_id": 2},
        {"order_id": 102, "customer_id": 99},
        {"order_id": 103, "product_id": 77},
        {"order_id": 104, "customer_id": 3},
        {"order_id": 105, "customer_id": None},  # missing, not orphaned
    )
    run = {"customers": customers, "products": bronze(spark, "products", {}), "orders": orders}
    result = build_silver(run, PARAMS)
    assertDataFrameEqual(
        result.silver["orders"],
        silver_frame(spark, "orders", {"order_id": 100}, {"order_id": 101, "customer_id": 2}),
    )
    assertDataFrameEqual(
        just_rules(result),
        quarantine_frame(
            spark,
            [
                ("customers", 1, ["email_format"]),
                ("customers", None, ["malformed_record"]),
                ("orders", 102, ["customer_exists"]),
                ("orders", 103, ["product_exists"]),
                ("orders", 104, ["customer_exists"]),
                ("orders", 105, ["customer_id_required"]),
            ],
        ),
    )


def test_orders_without_their_references_are_refused(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match=r"orders\.customer_id is checked against customers"):
        build_silver({"orders": bronze(spark, "orders", {})}, PARAMS)
    keys = {
        "customers": spark.createDataFrame([(1,)], "customer_id long"),
        "products": spark.createDataFrame([(10,)], "product_id long"),
    }
    result = build_silver({"orders": bronze(spark, "orders", {})}, PARAMS, extra_keys=keys)
    assert result.silver["orders"].count() == 1


# --- ingest errors -------------------------------------------------------------------------


def test_ingest_errors_are_quarantined_with_their_raw_text(spark: SparkSession) -> None:
    raw_line = "PARTIAL WRITE 1A2B"
    mismatch_json = json.dumps({"product_id": "11", "price": "ten"})
    rows = bronze(
        spark,
        "products",
        {"product_id": None, "name": None, "_errors": ["malformed_record"], "_raw": raw_line},
        {
            "product_id": 11,
            "price": None,
            "_errors": ["type_mismatch:price"],
            "_raw": mismatch_json,
        },
        {"product_id": 12},
    )
    result = build_silver({"products": rows}, PARAMS)
    expected = spark.createDataFrame(
        [
            (
                "products",
                None,
                ["malformed_record"],
                "the line could not be read as a product record",
                SOURCE,
                raw_line,
                INGESTED,
            ),
            (
                "products",
                11,
                ["type_mismatch:price"],
                "price does not convert to decimal(10,2)",
                SOURCE,
                mismatch_json,
                INGESTED,
            ),
        ],
        QUARANTINE_SCHEMA,
    )
    assertDataFrameEqual(result.quarantine, expected)
    assertSchemaEqual(result.quarantine.schema, QUARANTINE_SCHEMA)
    assert [r.product_id for r in result.silver["products"].collect()] == [12]


def test_quarantined_value_rows_carry_their_values_as_received(spark: SparkSession) -> None:
    rows = bronze(spark, "customers", {"email": "  BROKEN  "})
    row = build_silver({"customers": rows}, PARAMS).quarantine.first()
    assert json.loads(row["_raw"])["email"] == "  BROKEN  "
    assert row["reason"] == "email is not a valid address"


# --- accounting and counts -----------------------------------------------------------------


def test_every_row_is_accounted_for(spark: SparkSession) -> None:
    customers = bronze(
        spark,
        "customers",
        {"customer_id": 1},
        {"customer_id": 1},  # exact duplicate
        {"customer_id": 2, "updated_at": ts("2024-01-01 00:00:00")},  # superseded
        {"customer_id": 2},
        {"customer_id": 3, "email": None},  # quarantined
        {"customer_id": 4, "city": None},  # repaired
        {"customer_id": None, "_errors": ["malformed_record"], "_raw": "x"},
    )
    result = build_silver({"customers": customers}, PARAMS)
    counts = result.counts().check()
    (entity,) = counts.entities
    assert (entity.rows_in, entity.silver, entity.quarantined) == (7, 3, 2)
    assert (entity.exact_duplicates, entity.superseded, entity.repaired) == (1, 1, 1)
    assert entity.balanced
    by_rule = {(r.rule, r.criticality): r.rows for r in counts.rules}
    assert by_rule[("malformed_record", "error")] == 1
    assert by_rule[("email_required", "error")] == 1
    assert by_rule[("city_missing", "repair")] == 1
    assert by_rule[("email_format", "error")] == 0  # declared rules are listed even at zero
    assert "customers" in counts.format()
    rule_table = result.rule_counts()
    assert rule_table.filter("rule = 'email_required'").first()["rows"] == 1


# --- strict mode ---------------------------------------------------------------------------


def test_strict_mode_names_entity_rule_count_and_example(spark: SparkSession) -> None:
    customers = bronze(
        spark,
        "customers",
        {"customer_id": 7, "email": "nope"},
        {"customer_id": 8, "email": "nope either"},
        {"customer_id": 9},
        {"customer_id": 10, "signup_date": dt.date(1905, 1, 1)},  # a later rule in the list
    )
    strict = QualityParams(as_of=AS_OF, strict=True)
    with pytest.raises(QualityRuleError) as caught:
        build_silver({"customers": customers}, strict)
    error = caught.value
    assert (error.entity, error.rule, error.count) == ("customers", "email_format", 2)
    assert "customers" in str(error) and "email_format" in str(error)
    assert "record_id=" in str(error)
    # clean data passes strict mode
    build_silver({"customers": bronze(spark, "customers", {})}, strict)


# --- parameters ----------------------------------------------------------------------------


def test_params_from_config(spark: SparkSession) -> None:  # rules are Columns: need a session
    params = QualityParams.from_config(
        {
            "min_date": "2010-01-01",
            "country_map": {"Britain": "United Kingdom"},
            "nulls": {"products": {"required": ["product_id", "price"], "defaults": {"cost": 0}}},
        },
        as_of=AS_OF,
    )
    assert params.min_date == dt.date(2010, 1, 1) and params.as_of == AS_OF
    assert params.canonical_countries["britain"] == "United Kingdom"
    names = {r.name for r in entity_rules(params)["products"]}
    assert {"cost_missing", "price_required"} <= names and "cost_required" not in names
    configured = QualityParams.from_config({"as_of": "2025-06-30T00:00:00"}, as_of=AS_OF)
    assert configured.as_of == dt.datetime(2025, 6, 30)
    with pytest.raises(ValueError, match="unknown key"):
        QualityParams.from_config({"min_dat": "2010-01-01"}, as_of=AS_OF)
    with pytest.raises(ValueError, match="must be required"):
        QualityParams.from_config(
            {"nulls": {"orders": {"required": ["quantity"], "defaults": {}}}}, as_of=AS_OF
        )
    with pytest.raises(ValueError, match="cannot be imputed"):
        QualityParams.from_config(
            {"nulls": {"orders": {"defaults": {"order_ts": "2020-01-01"}}}}, as_of=AS_OF
        )
    with pytest.raises(ValueError, match="no run time"):
        QualityParams.from_config({})


def test_every_rule_has_a_reason_kind_and_columns(spark: SparkSession) -> None:
    for entity, rules in entity_rules(PARAMS).items():
        names = [r.name for r in rules]
        assert len(names) == len(set(names)), entity
        for rule in rules:
            assert rule.reason and rule.columns
            assert set(rule.columns) <= set(RAW_SCHEMAS[entity].fieldNames())


# --- generated data end to end -------------------------------------------------------------

TEXT_FORMATS = ("csv", "json")
MIN_CAUGHT = 0.99
MAX_FALSE_POSITIVES = 0.001


def _avro_works() -> bool:
    try:
        import sparkmart.io.avro  # noqa: F401
    except Exception:  # a broken Avro module only removes that format from the run
        return False
    return True


FORMATS_UNDER_TEST = ("csv", "json", "parquet", *(("avro",) if _avro_works() else ()))


class GeneratedRun:
    """One generator run written in several formats, built into silver once per format."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        out: Path,
        rows: int,
        formats: tuple[str, ...],
    ) -> None:
        counts = resolve_counts(settings, None, rows, rows, rows)
        data = generate(spark, counts, seed=11, gen_config=settings.pipeline["generate"])
        write_generated(data, out, list(formats), None)
        self.as_of = dt.datetime.combine(data.plan.end_date, dt.time())
        self.truth = spark.read.parquet(str(out / "truth" / "defects")).cache()
        params = QualityParams(as_of=self.as_of)
        self.bronze: dict[str, dict[str, DataFrame]] = {}
        self.results: dict[str, SilverResult] = {}
        for fmt in formats:
            self.bronze[fmt] = {
                e: read_bronze(spark, sources_for(e, [fmt], out), INGESTED)[0] for e in ENTITIES
            }
            self.results[fmt] = build_silver(self.bronze[fmt], params).persist()

    def close(self) -> None:
        for result in self.results.values():
            result.unpersist()
        self.truth.unpersist()


@pytest.fixture(scope="module")
def tiny_run(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GeneratedRun]:
    run = GeneratedRun(
        spark, settings, tmp_path_factory.mktemp("quality_tiny"), 1000, FORMATS_UNDER_TEST
    )
    yield run
    run.close()


@pytest.fixture(scope="module")
def larger_run(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GeneratedRun]:
    run = GeneratedRun(
        spark, settings, tmp_path_factory.mktemp("quality_larger"), 5000, ("csv", "parquet")
    )
    yield run
    run.close()


def _assert_scores(run: GeneratedRun, fmt: str) -> None:
    result = run.results[fmt]
    counts = result.counts().check()  # rows in (counted on bronze) = silver + quarantined + dups
    assert all(c.rows_in > 0 and c.silver > 0 for c in counts.entities)
    score = score_against_truth(result, run.truth, malformed_lines_planted=fmt in TEXT_FORMATS)
    report = f"{fmt}\n{score.format()}\nmissed: {score.missed_examples}"
    assert score.caught_share >= MIN_CAUGHT, report
    assert score.false_positive_share <= MAX_FALSE_POSITIVES, report
    assert score.clean_rows > 0 and sum(score.planted.values()) > 0, report
    if fmt in TEXT_FORMATS:
        assert score.planted.get("malformed_line", 0) > 0, report
    else:
        assert "malformed_line" not in score.planted, report


@pytest.mark.parametrize("fmt", FORMATS_UNDER_TEST)
def test_generated_tiny_defects_are_caught(tiny_run: GeneratedRun, fmt: str) -> None:
    _assert_scores(tiny_run, fmt)


def test_every_format_gives_the_same_silver(tiny_run: GeneratedRun) -> None:
    first, *others = FORMATS_UNDER_TEST
    for entity in ENTITIES:
        expected = tiny_run.results[first].silver[entity].drop("_source")
        for fmt in others:
            actual = tiny_run.results[fmt].silver[entity].drop("_source")
            assertDataFrameEqual(actual, expected)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generated_larger_defects_are_caught(larger_run: GeneratedRun, fmt: str) -> None:
    _assert_scores(larger_run, fmt)
