"""The generator's API: resolve row counts, build every DataFrame of one run (lazily).

``generate`` does no I/O and triggers no Spark job: it returns DataFrames that ``writer.py``
writes. Calling it twice with the same seed and counts gives the same content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkmart.config import Settings
from sparkmart.generate import calendar, entities
from sparkmart.generate.defects import plant_defects
from sparkmart.generate.params import STREAMING_SEED_DAYS, GenerationPlan, make_plan
from sparkmart.schemas import ENTITIES, RAW_SCHEMAS, TRUTH_SCHEMAS

# Ground-truth columns (and what product_truth needs) carried from the clean rows to `shared`.
TRUTH_INPUTS: Mapping[str, tuple[str, ...]] = {
    "customers": ("segment", "segment_name", "is_heavy", "favourite_products"),
    "products": ("expected_share", "reorder_threshold", "_category", "_rank"),
    "orders": ("is_fraud", "satisfaction"),
}


@dataclass
class GeneratedData:
    """Every output of one generator run, as lazy DataFrames.

    ``customers``/``products``/``orders`` are the raw rows as written (defects planted,
    duplicates included); ``truth`` holds the ground truth (customers, products, orders,
    defects) that must never be joined into features; ``malformed_lines`` the garbage lines
    each entity's CSV and JSON files get; ``seed_events`` the clean, time-ordered orders of
    the last week for the stream simulator; ``clean`` the rows before any defect.

    ``shared`` holds, per entity, the one frame its rows, truth and garbage lines are all
    selected from (one row per key); ``write_generated`` caches it so that each entity is
    generated once however many outputs are written.
    """

    plan: GenerationPlan
    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    truth: dict[str, DataFrame]
    malformed_lines: dict[str, DataFrame]
    seed_events: DataFrame
    clean: dict[str, DataFrame] = field(default_factory=dict)  # rows before defects
    shared: dict[str, DataFrame] = field(default_factory=dict)  # see below

    def entity(self, name: str) -> DataFrame:
        return {"customers": self.customers, "products": self.products, "orders": self.orders}[name]


def resolve_counts(
    settings: Settings,
    scale: str | None,
    customers: int | None = None,
    products: int | None = None,
    orders: int | None = None,
) -> dict[str, int]:
    """Rows per entity: the preset ``scale``, with any explicit count overriding it.

    Without a scale every count must be given.
    """
    scales: Mapping[str, Mapping[str, int]] = settings.pipeline["generate"]["scales"]
    explicit = {"customers": customers, "products": products, "orders": orders}
    if scale is None:
        missing = [name for name, value in explicit.items() if value is None]
        if missing:
            raise ValueError(
                f"no --scale given and no count for {', '.join(missing)} "
                f"(presets: {', '.join(scales)})"
            )
        base: Mapping[str, int] = {}
    elif scale not in scales:
        raise ValueError(f"unknown scale '{scale}' (choose one of: {', '.join(scales)})")
    else:
        base = scales[scale]
    counts = {name: value if value is not None else base[name] for name, value in explicit.items()}
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name}: expected a positive number of rows, got {value!r}")
    return counts


def _truth(frame: DataFrame, name: str) -> DataFrame:
    """Cast to the declared truth schema (column order and types)."""
    schema = TRUTH_SCHEMAS[name]
    return frame.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])


def _raw(frame: DataFrame, entity: str) -> DataFrame:
    return frame.select(*[F.col(f.name).cast(f.dataType) for f in RAW_SCHEMAS[entity].fields])


def seed_events(spark: SparkSession, plan: GenerationPlan) -> DataFrame:
    """Clean orders of the last STREAMING_SEED_DAYS days, with event_id and event_time.

    Built from the matching slice of the hour table, so only those orders are computed; they
    are identical to the same orders of the full run.
    """
    hours = calendar.hour_table(plan)
    cutoff = plan.end_epoch - STREAMING_SEED_DAYS * 86400
    recent = hours[hours["hour_start"] >= cutoff].reset_index(drop=True)
    orders = _raw(entities.orders_base(spark, plan, recent), "orders")
    return orders.withColumns(
        {
            "event_id": F.col("order_id"),
            "event_time": F.col("order_ts"),
        }
    )


def generate(
    spark: SparkSession, counts: Mapping[str, int], seed: int, gen_config: Mapping[str, Any]
) -> GeneratedData:
    """Build all DataFrames of one run; nothing is computed until they are written."""
    plan = make_plan(counts, seed, gen_config)
    bases = {
        "customers": entities.customers_base(spark, plan),
        "products": entities.products_base(spark, plan),
        "orders": entities.orders_base(spark, plan, calendar.hour_table(plan)),
    }
    planted = {
        entity: plant_defects(bases[entity], entity, plan, TRUTH_INPUTS[entity])
        for entity in ENTITIES
    }
    shared = {entity: planted[entity].shared for entity in ENTITIES}
    defects = planted["customers"].truth
    for entity in ENTITIES[1:]:
        defects = defects.unionByName(planted[entity].truth)
    truth = {
        "customers": _truth(shared["customers"], "customers"),
        "products": _truth(entities.product_truth(shared["products"], plan), "products"),
        "orders": _truth(shared["orders"], "orders"),
        "defects": _truth(defects, "defects"),
    }
    return GeneratedData(
        plan=plan,
        customers=_raw(planted["customers"].rows, "customers"),
        products=_raw(planted["products"].rows, "products"),
        orders=_raw(planted["orders"].rows, "orders"),
        truth=truth,
        malformed_lines={entity: planted[entity].malformed_lines for entity in ENTITIES},
        seed_events=seed_events(spark, plan),
        clean={entity: _raw(bases[entity], entity) for entity in ENTITIES},
        shared=shared,
    )


def postgres_seed(
    spark: SparkSession,
    gen_config: Mapping[str, Any],
    seed: int | None = None,
    rows: int | None = None,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """The earlier project's PostgreSQL tables: customers, products, orders (clean rows).

    The same generator at ``postgres_rows`` rows per entity, without planted defects: the
    tables have primary keys, and the old database is the trusted source the batch pipeline
    reconciles against. Writing them to PostgreSQL is the caller's job.
    """
    n = rows if rows is not None else int(gen_config["postgres_rows"])
    data = generate(
        spark,
        dict.fromkeys(ENTITIES, n),
        gen_config["seed"] if seed is None else seed,
        gen_config,
    )
    return data.clean["customers"], data.clean["products"], data.clean["orders"]
