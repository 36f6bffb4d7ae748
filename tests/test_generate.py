"""The Spark-native generator: determinism, exact counts, planted defects and their ground truth,
planted structure, and the written files read back through ``io.files``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import Settings
from sparkmart.generate import (
    GeneratedData,
    entities,
    generate,
    postgres_seed,
    resolve_counts,
    write_generated,
)
from sparkmart.generate.defects import CLEAN_EMAIL_REGEX, CLEAN_PHONE_REGEX, ENTITY_DEFECTS
from sparkmart.io.files import CORRUPT_COLUMN, dataset_path, read_dataset, write_dataset
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS, TRUTH_SCHEMAS

TINY = {"customers": 1000, "products": 1000, "orders": 1000}
SAMPLE = {"customers": 5000, "products": 5000, "orders": 30000}
NULLABLE = {"orders": {"shipped_ts", "delivered_ts"}}  # legitimately null (orders not shipped yet)


@pytest.fixture(scope="module", autouse=True)
def interpreted_expressions(spark: SparkSession) -> Iterator[None]:
    """Evaluate expressions without generating Java for this module's small data.

    The generator's plans are large; compiling them costs far more than evaluating a few
    thousand rows. Results are identical; the generated-code path is what the benchmark runs.
    """
    keys = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
    saved = {key: spark.conf.get(key, None) for key in keys}
    for key, value in keys.items():
        spark.conf.set(key, value)
    yield
    for key, value in saved.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


@pytest.fixture(scope="module")
def gen_config(settings: Settings) -> dict[str, Any]:
    return settings.pipeline["generate"]


@pytest.fixture(scope="module")
def tiny(spark: SparkSession, gen_config: dict[str, Any]) -> GeneratedData:
    return generate(spark, TINY, 7, gen_config)


@dataclass
class Sample:
    """A few thousand rows of each entity, collected to pandas once for the statistics."""

    data: GeneratedData
    rows: dict[str, pd.DataFrame]
    clean: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    malformed: dict[str, list[str]]
    start: pd.Timestamp
    end: pd.Timestamp


@pytest.fixture(scope="module")
def sample(spark: SparkSession, gen_config: dict[str, Any]) -> Sample:
    data = generate(spark, SAMPLE, 11, gen_config)
    start = pd.Timestamp(gen_config["start_date"])
    return Sample(
        data=data,
        rows={e: data.entity(e).toPandas() for e in ENTITIES},
        clean={e: data.clean[e].toPandas() for e in ENTITIES},
        truth={name: frame.toPandas() for name, frame in data.truth.items()},
        malformed={e: [r.value for r in data.malformed_lines[e].collect()] for e in ENTITIES},
        start=start,
        end=start + pd.Timedelta(days=gen_config["days"]),
    )


def defects_of(sample: Sample, entity: str, kind: str | None = None) -> pd.DataFrame:
    truth = sample.truth["defects"]
    selected = truth[truth.entity == entity]
    return selected if kind is None else selected[selected.defect == kind]


# --- counts and determinism ----------------------------------------------------------------


def test_resolve_counts_presets_overrides_and_errors(settings: Settings) -> None:
    assert resolve_counts(settings, "tiny") == TINY
    assert resolve_counts(settings, "small", orders=5) == {
        "customers": 100_000,
        "products": 100_000,
        "orders": 5,
    }
    assert resolve_counts(settings, None, 3, 4, 5) == {"customers": 3, "products": 4, "orders": 5}
    with pytest.raises(ValueError, match="huge"):
        resolve_counts(settings, "huge")
    with pytest.raises(ValueError, match="products"):
        resolve_counts(settings, None, customers=3, orders=5)
    with pytest.raises(ValueError, match="positive"):
        resolve_counts(settings, "tiny", orders=0)


def fingerprint(data: GeneratedData, names: set[str] | None = None) -> list[tuple[str, str]]:
    """Output rows of a run as sorted (output name, JSON) pairs, collected in one Spark job."""
    outputs = {
        **{entity: data.entity(entity) for entity in ENTITIES},
        **{f"malformed/{entity}": data.malformed_lines[entity] for entity in ENTITIES},
        **{f"truth/{name}": frame for name, frame in data.truth.items()},
        "seed_events": data.seed_events,
    }
    parts = [
        frame.select(F.lit(name).alias("output"), F.to_json(F.struct("*")).alias("row"))
        for name, frame in outputs.items()
        if names is None or name in names
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return sorted((r.output, r.row) for r in union.collect())


@pytest.fixture(scope="module")
def tiny_fingerprint(tiny: GeneratedData) -> list[tuple[str, str]]:
    return fingerprint(tiny)


def test_same_seed_gives_the_same_content(
    spark: SparkSession,
    gen_config: dict[str, Any],
    tiny_fingerprint: list[tuple[str, str]],
) -> None:
    again = fingerprint(generate(spark, TINY, 7, gen_config))
    assert again == tiny_fingerprint
    outputs = {output for output, _ in again}
    assert len(outputs) == 3 + 3 + len(TRUTH_SCHEMAS) + 1


def test_content_does_not_depend_on_partitioning(
    spark: SparkSession,
    gen_config: dict[str, Any],
    tiny: GeneratedData,
    tiny_fingerprint: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(entities, "ROWS_PER_PARTITION", 150)
    many = generate(spark, TINY, 7, gen_config)
    assert many.customers.rdd.getNumPartitions() > tiny.customers.rdd.getNumPartitions()
    assert many.orders.rdd.getNumPartitions() > tiny.orders.rdd.getNumPartitions()
    compared = {*ENTITIES, "truth/defects"}
    assert fingerprint(many, compared) == [row for row in tiny_fingerprint if row[0] in compared]


def test_another_seed_gives_other_content(
    spark: SparkSession, gen_config: dict[str, Any], tiny_fingerprint: list[tuple[str, str]]
) -> None:
    other = set(fingerprint(generate(spark, TINY, 8, gen_config), set(ENTITIES)))
    for entity in ENTITIES:
        mine = {row for row in tiny_fingerprint if row[0] == entity}
        assert len(mine - other) > 0.9 * len(mine), entity


def test_rows_written_are_clean_rows_plus_planted_duplicates(tiny: GeneratedData) -> None:
    defects = tiny.truth["defects"].groupBy("entity", "defect").count().collect()
    planted = {(r.entity, r.defect): r["count"] for r in defects}
    for entity in ENTITIES:
        copies = planted.get((entity, "exact_duplicate"), 0) + planted.get(
            (entity, "near_duplicate"), 0
        )
        assert copies > 0
        assert tiny.entity(entity).count() == TINY[entity] + copies
        assert tiny.clean[entity].count() == TINY[entity]
        assert tiny.truth[entity].count() == TINY[entity]
        assert tiny.malformed_lines[entity].count() == planted.get((entity, "malformed_line"), 0)

    def names_and_types(frame: DataFrame) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in frame.schema]

    for name, schema in TRUTH_SCHEMAS.items():
        assert names_and_types(tiny.truth[name]) == [
            (f.name, f.dataType.simpleString()) for f in schema
        ], name
    for entity, schema in RAW_SCHEMAS.items():
        assert names_and_types(tiny.entity(entity)) == [
            (f.name, f.dataType.simpleString()) for f in schema
        ], entity


# --- defects and their ground truth --------------------------------------------------------


def test_defect_rates_match_the_configuration(sample: Sample, gen_config: dict[str, Any]) -> None:
    for entity, spec in ENTITY_DEFECTS.items():
        n = SAMPLE[entity]
        for kind in spec.kinds:
            rate = gen_config["defects"][kind]
            observed = len(defects_of(sample, entity, kind))
            sigma = (n * rate * (1 - rate)) ** 0.5
            assert abs(observed - n * rate) <= 4 * sigma + 2, (entity, kind, observed, n * rate)


def test_rows_carry_at_most_one_defect_and_keys_are_unique_otherwise(sample: Sample) -> None:
    for entity in ENTITIES:
        key = PRIMARY_KEYS[entity]
        truth = defects_of(sample, entity).dropna(subset=["record_id"])
        assert not truth.record_id.duplicated().any(), entity
        counts = sample.rows[entity][key].value_counts()
        duplicated = set(counts[counts > 1].index)
        planted = set(truth[truth.defect.isin(["exact_duplicate", "near_duplicate"])].record_id)
        assert duplicated == planted, entity
        assert (counts[counts > 1] == 2).all()


def rows_by_key(sample: Sample, entity: str, ids: pd.Series) -> pd.DataFrame:
    rows = sample.rows[entity]
    return rows[rows[PRIMARY_KEYS[entity]].isin(set(ids))]


def test_value_defects_are_where_the_truth_says(sample: Sample) -> None:
    email, phone = re.compile(CLEAN_EMAIL_REGEX), re.compile(CLEAN_PHONE_REGEX)
    for entity in ENTITIES:
        key = PRIMARY_KEYS[entity]
        rows = sample.rows[entity].set_index(key)
        nulls = defects_of(sample, entity, "null_value")
        assert len(nulls) > 0
        for record in nulls.itertuples():
            assert pd.isna(rows.loc[record.record_id, record.column]), record
            assert record.detail.startswith("was ")

    customers = sample.rows["customers"].set_index("customer_id")
    for record in defects_of(sample, "customers", "bad_email").itertuples():
        value = customers.loc[record.record_id, "email"]
        assert value == record.detail and not email.match(value), value
    for record in defects_of(sample, "customers", "bad_phone").itertuples():
        value = customers.loc[record.record_id, "phone"]
        assert not phone.match(value) and len(re.sub(r"\D", "", value)) < 10, value
    bad_signup = rows_by_key(
        sample, "customers", defects_of(sample, "customers", "bad_date").record_id
    )
    assert (pd.to_datetime(bad_signup.signup_date) < pd.Timestamp("1910-01-01")).all()

    orders = sample.rows["orders"].set_index("order_id")
    bad_quantity = defects_of(sample, "orders", "bad_quantity")
    assert (orders.loc[bad_quantity.record_id, "quantity"] <= 0).all()
    bad_date = orders.loc[defects_of(sample, "orders", "bad_date").record_id, "order_ts"]
    far_future = sample.end + pd.Timedelta(days=50 * 365)
    assert ((bad_date >= far_future) | (bad_date < pd.Timestamp("1910-01-01"))).all()
    assert (bad_date >= sample.end).any() and (bad_date < sample.start).any()
    ids = {
        "customer_id": set(sample.clean["customers"].customer_id),
        "product_id": set(sample.clean["products"].product_id),
    }
    orphans = defects_of(sample, "orders", "orphan_fk")
    assert set(orphans.column) == {"customer_id", "product_id"}
    for record in orphans.itertuples():
        assert orders.loc[record.record_id, record.column] not in ids[record.column]


def test_duplicates_are_exact_copies_or_older_versions(sample: Sample) -> None:
    for entity in ENTITIES:
        key = PRIMARY_KEYS[entity]
        exact = rows_by_key(sample, entity, defects_of(sample, entity, "exact_duplicate").record_id)
        assert len(exact) > 0
        assert not exact.drop_duplicates().duplicated(subset=[key]).any()  # copies are identical
        near = defects_of(sample, entity, "near_duplicate")
        versions = rows_by_key(sample, entity, near.record_id).sort_values([key, "updated_at"])
        for record in near.itertuples():
            older, newer = versions[versions[key] == record.record_id].itertuples(index=False)
            assert older.updated_at < newer.updated_at
            assert getattr(older, record.column) != getattr(newer, record.column)
            assert record.detail.startswith("older version")


def test_malformed_lines_are_recorded_without_a_key(sample: Sample) -> None:
    for entity in ENTITIES:
        truth = defects_of(sample, entity, "malformed_line")
        assert truth.record_id.isna().all()
        assert sorted(truth.detail) == sorted(sample.malformed[entity])
        assert all(line and not line.startswith("#") for line in sample.malformed[entity])


def clean_rows(sample: Sample, entity: str) -> pd.DataFrame:
    """Written rows of keys without any planted defect."""
    defective = set(defects_of(sample, entity).record_id.dropna())
    rows = sample.rows[entity]
    return rows[~rows[PRIMARY_KEYS[entity]].isin(defective)]


def test_clean_rows_have_no_defects(sample: Sample) -> None:
    for entity in ENTITIES:
        rows = clean_rows(sample, entity)
        assert len(rows) > 0.85 * SAMPLE[entity]
        assert not rows[PRIMARY_KEYS[entity]].duplicated().any()
        required = [c for c in rows.columns if c not in NULLABLE.get(entity, set())]
        assert rows[required].notna().all().all(), entity
        assert (rows.updated_at <= sample.end).all()

    customers = clean_rows(sample, "customers")
    assert customers.email.str.match(CLEAN_EMAIL_REGEX).all()
    assert customers.phone.str.match(CLEAN_PHONE_REGEX).all()
    signup = pd.to_datetime(customers.signup_date)
    assert (signup >= sample.start - (sample.end - sample.start)).all() and (
        signup < sample.end
    ).all()
    assert (customers.updated_at > signup).all()

    products = clean_rows(sample, "products")
    assert ((products.cost > 0) & (products.cost < products.price)).all()
    assert (products.stock_quantity >= 0).all()

    orders = clean_rows(sample, "orders")
    assert (orders.quantity >= 1).all()
    assert ((orders.discount >= 0) & (orders.discount < 0.5)).all()
    assert ((orders.order_ts >= sample.start) & (orders.order_ts < sample.end)).all()
    assert orders.customer_id.isin(sample.clean["customers"].customer_id).all()
    assert orders.product_id.isin(sample.clean["products"].product_id).all()
    shipped = orders.dropna(subset=["shipped_ts"])
    assert (shipped.shipped_ts > shipped.order_ts).all()
    delivered = orders.dropna(subset=["delivered_ts"])
    assert (delivered.delivered_ts > delivered.shipped_ts).all()
    expected_nulls = {
        "processing": (True, True),
        "cancelled": (True, True),
        "shipped": (False, True),
        "delivered": (False, False),
        "returned": (False, False),
    }
    for status, (no_ship, no_delivery) in expected_nulls.items():
        subset = orders[orders.status == status]
        assert len(subset) > 0, status
        assert (subset.shipped_ts.isna() == no_ship).all(), status
        assert (subset.delivered_ts.isna() == no_delivery).all(), status


def test_derived_attributes_agree_across_entities(sample: Sample) -> None:
    """Orders compute prices and eligibility without joins; check them against the entities."""
    orders = (
        sample.clean["orders"]
        .merge(sample.clean["products"][["product_id", "price"]], on="product_id")
        .merge(sample.clean["customers"][["customer_id", "signup_date"]], on="customer_id")
    )
    assert len(orders) == SAMPLE["orders"]
    assert (orders.unit_price == orders.price).all()
    assert (orders.order_ts.dt.date > orders.signup_date).all()


# --- planted structure ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def enriched(sample: Sample) -> pd.DataFrame:
    """Clean orders with their truth, the customer's segment and the order amount."""
    orders = sample.clean["orders"].merge(sample.truth["orders"], on="order_id")
    orders = orders.merge(sample.truth["customers"], on="customer_id")
    orders["amount"] = (
        orders.quantity * orders.unit_price.astype(float) * (1 - orders.discount.astype(float))
    )
    return orders


def test_segments_differ_in_frequency_and_spend(sample: Sample, enriched: pd.DataFrame) -> None:
    per_customer = enriched.groupby("customer_id").agg(
        orders=("order_id", "size"), spend=("amount", "sum")
    )
    customers = sample.truth["customers"].set_index("customer_id").join(per_customer).fillna(0)
    assert customers.segment.nunique() == 5
    by_segment = customers.groupby("segment_name")[["orders", "spend"]].mean()
    assert by_segment.loc["champions", "orders"] > 2 * by_segment.loc["loyal", "orders"]
    assert by_segment.loc["loyal", "orders"] > 2 * by_segment.loc["occasional", "orders"]
    assert by_segment.loc["champions", "spend"] > 5 * by_segment.spend.drop("champions").max()
    # each segment has its own favourite category
    favourite = enriched.groupby("segment_name").apply(
        lambda o: o.merge(sample.clean["products"], on="product_id").category.mode()[0],
        include_groups=False,
    )
    assert favourite.nunique() == 5


def test_popularity_and_heavy_customers_are_skewed(
    sample: Sample, enriched: pd.DataFrame, gen_config: dict[str, Any]
) -> None:
    per_product = enriched.product_id.value_counts()
    top = per_product.head(SAMPLE["products"] // 100).sum() / len(enriched)
    assert top > 0.2  # the top 1% of products
    ranks = sample.truth["products"].set_index("product_id").popularity_rank
    assert ranks.sort_values().is_unique and ranks.max() == SAMPLE["products"]
    assert per_product.index[:20].map(ranks).to_series().median() < SAMPLE["products"] / 20

    heavy = sample.truth["customers"].query("is_heavy").customer_id
    assert len(heavy) == gen_config["heavy_customers"]
    share = enriched.customer_id.isin(heavy).mean()
    assert abs(share - gen_config["heavy_customer_order_share"]) < 0.015


def test_customers_rebuy_their_own_favourite_products(
    sample: Sample, enriched: pd.DataFrame
) -> None:
    """A customer's orders land on the customer's own planted favourites far more often than
    on the favourites of another member of the same segment (same categories, same Zipf
    popularity: what chance and popularity alone would give)."""
    customers = sample.truth["customers"]
    categories = sample.clean["products"].set_index("product_id").category
    regular = enriched[~enriched.is_fraud & ~enriched.is_heavy]
    own = pd.Series(
        [p in set(f) for p, f in zip(regular.product_id, regular.favourite_products, strict=True)]
    )
    # everyone's favourites, rotated by one customer within the segment
    rotated = customers[~customers.is_heavy].sort_values(["segment", "customer_id"])
    rotated = rotated.assign(
        other=rotated.groupby("segment").favourite_products.transform(lambda f: np.roll(f, 1))
    ).set_index("customer_id")
    others = regular.customer_id.map(rotated.other)
    other = pd.Series([p in set(f) for p, f in zip(regular.product_id, others, strict=True)])
    assert own.mean() > 0.3
    assert own.mean() > 4 * other.mean()
    # favourites are products of the segment's two preferred categories; heavy ones have none
    listed = customers[~customers.is_heavy].explode("favourite_products")
    assert listed.favourite_products.map(categories).groupby(listed.segment).nunique().max() <= 2
    assert (customers[customers.is_heavy].favourite_products.map(len) == 0).all()
    # so customers with several orders re-buy products
    repeats = regular.duplicated(["customer_id", "product_id"]).sum() / len(regular)
    assert repeats > 0.1


def test_fraud_is_rare_and_learnable(
    sample: Sample, enriched: pd.DataFrame, gen_config: dict[str, Any]
) -> None:
    fraud, normal = enriched[enriched.is_fraud], enriched[~enriched.is_fraud]
    assert abs(len(fraud) / len(enriched) - gen_config["fraud_rate"]) < 0.005
    assert fraud.amount.median() > 4 * normal.amount.median()
    night = enriched.order_ts.dt.hour < 6
    assert night[fraud.index].mean() > 0.3 > 3 * night[normal.index].mean()
    assert (fraud.payment_method == "gift_card").mean() > 0.3
    signup = sample.clean["customers"].set_index("customer_id").signup_date
    age = enriched.order_ts.dt.date - enriched.customer_id.map(signup)
    new_account = age.map(lambda d: d.days) < 7
    assert new_account[fraud.index].mean() > 0.3 > 10 * new_account[normal.index].mean()


def test_sales_have_weekly_seasonality_and_a_trend(enriched: pd.DataFrame) -> None:
    daily = enriched.groupby(enriched.order_ts.dt.normalize()).size()
    weekend = daily.index.dayofweek >= 5
    assert daily[weekend].mean() > 1.2 * daily[~weekend].mean()
    halves = np.array_split(daily.to_numpy(), 2)
    assert halves[1].mean() > 1.3 * halves[0].mean()


def test_satisfaction_follows_processing_and_delivery_time(enriched: pd.DataFrame) -> None:
    delivered = enriched.dropna(subset=["delivered_ts"])
    processing = (delivered.shipped_ts - delivered.order_ts).dt.total_seconds()
    delivery = (delivered.delivered_ts - delivered.shipped_ts).dt.total_seconds()
    assert delivered.satisfaction.between(1, 5).all()
    assert np.corrcoef(delivered.satisfaction, delivery)[0, 1] < -0.6
    assert np.corrcoef(delivered.satisfaction, processing)[0, 1] < -0.2
    features = np.column_stack([np.ones(len(delivered)), processing, delivery])
    fitted = features @ np.linalg.lstsq(features, delivered.satisfaction, rcond=None)[0]
    residual = delivered.satisfaction - fitted
    assert 1 - residual.var() / delivered.satisfaction.var() > 0.7


# --- written files -------------------------------------------------------------------------


def sorted_rows(frame: DataFrame) -> list[Any]:
    return sorted(frame.collect(), key=lambda row: tuple(str(v) for v in row))


def test_written_formats_read_back_the_same_rows_and_the_planted_garbage(
    spark: SparkSession, tiny: GeneratedData, tmp_path: Path
) -> None:
    out = tmp_path / "raw"
    summary = write_generated(tiny, out, ["parquet", "json", "csv"], tmp_path / "streaming")
    for entity in ENTITIES:
        schema = RAW_SCHEMAS[entity]
        parquet = read_dataset(spark, out / "parquet" / entity, "parquet", schema)
        assertDataFrameEqual(parquet, tiny.entity(entity))
        expected_garbage = sorted(r.value for r in tiny.malformed_lines[entity].collect())
        assert summary[entity]["parquet"] == parquet.count()
        assert summary["malformed_lines"][entity] == len(expected_garbage) > 0
        for fmt in ("json", "csv"):
            text = read_dataset(spark, out / fmt / entity, fmt, schema, keep_corrupt=True).cache()
            good = text.filter(F.col(CORRUPT_COLUMN).isNull()).drop(CORRUPT_COLUMN)
            assertDataFrameEqual(good, parquet)
            corrupt = [
                r[0]
                for r in text.filter(F.col(CORRUPT_COLUMN).isNotNull())
                .select(CORRUPT_COLUMN)
                .collect()
            ]
            assert sorted(corrupt) == expected_garbage, (entity, fmt)
            assert summary[entity][fmt] == parquet.count()
            text.unpersist()
        header = ",".join(schema.fieldNames())
        for part in (out / "csv" / entity).glob("part-*"):
            assert part.read_text().split("\n", 1)[0] == header
    for name in TRUTH_SCHEMAS:
        truth = read_dataset(spark, out / "truth" / name, "parquet", TRUTH_SCHEMAS[name])
        assert truth.count() == summary["truth"][name]

    # the stream's seed events: the last week of clean orders, in one time-ordered file
    events = spark.read.parquet(str(tmp_path / "streaming" / "seed_events")).collect()
    assert len(events) == summary["seed_events"] > 0
    times = [r.event_time for r in events]
    assert times == sorted(times)
    end = tiny.plan.start_date + dt.timedelta(days=tiny.plan.days)
    cutoff = dt.datetime.combine(end, dt.time()) - dt.timedelta(days=7)
    assert cutoff <= times[0] and times[-1] < cutoff + dt.timedelta(days=7)
    assert all(r.event_id == r.order_id and r.event_time == r.order_ts for r in events)
    expected = tiny.clean["orders"].filter(F.col("order_ts") >= F.lit(cutoff))
    assert sorted(r.order_id for r in events) == sorted(r.order_id for r in expected.collect())


def test_avro_output_matches_parquet(
    spark: SparkSession, tiny: GeneratedData, tmp_path: Path
) -> None:
    for entity in ENTITIES:
        path = dataset_path(tmp_path, "avro", entity)
        try:
            write_dataset(tiny.entity(entity), path, "avro")
        except NotImplementedError:
            pytest.skip("sparkmart.io.avro is not implemented yet")
        avro = read_dataset(spark, path, "avro", RAW_SCHEMAS[entity])
        assertDataFrameEqual(avro, tiny.entity(entity))


def test_postgres_seed_is_the_clean_generator_at_postgres_rows(
    spark: SparkSession, gen_config: dict[str, Any]
) -> None:
    frames: Mapping[str, DataFrame] = dict(
        zip(ENTITIES, postgres_seed(spark, gen_config), strict=True)
    )
    for entity, frame in frames.items():
        assert frame.columns == RAW_SCHEMAS[entity].fieldNames()
        assert frame.count() == gen_config["postgres_rows"]
        assert frame.select(PRIMARY_KEYS[entity]).distinct().count() == gen_config["postgres_rows"]
    assert frames["customers"].filter(~F.col("email").rlike(CLEAN_EMAIL_REGEX)).count() == 0
    assert frames["orders"].filter(F.col("quantity") < 1).count() == 0
