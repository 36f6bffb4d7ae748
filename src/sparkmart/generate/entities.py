"""Clean customers, products and orders with their planted structure, as Spark expressions.

Each entity is built from ``spark.range`` (orders: from the exploded hour table) by a chain of
pure transforms; every column is one SQL expression (see ``random.py`` for why SQL text).
Attributes that several entities need (a customer's signup day and shipping zone, a product's
price) are functions of the row index, so orders compute them directly instead of joining: the
whole generator runs without a shuffle.

Customers and products are generated in id order: the index that decides segment or category
is the inverse permutation of the id, so neither the file order nor the ids reveal it.

The returned "base" frames hold the raw columns plus the ground-truth columns; ``generator.py``
splits them into raw rows (where defects are planted) and truth tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from sparkmart.generate import calendar
from sparkmart.generate.params import (
    ADJECTIVES,
    CANCEL_RATE,
    CATEGORIES,
    CATEGORY_NAMES,
    CHAMPIONS,
    EMAIL_DOMAINS,
    FAVOURITE_SHARE,
    FAVOURITES_PER_CATEGORY,
    FIRST_NAMES,
    FRAUD_BURST,
    FRAUD_CATEGORY_WEIGHTS,
    FRAUD_NEW_ACCOUNT_SHARE,
    FRAUD_PAYMENT_WEIGHTS,
    LAST_NAMES,
    LOCATIONS,
    NEW_ACCOUNT_DAYS,
    PAYMENT_METHODS,
    PAYMENT_WEIGHTS,
    REORDER_LEAD_DAYS,
    SEGMENTS,
    ZONE_DELIVERY_HOURS,
    GenerationPlan,
    Permutation,
    category_weights,
    cumulative,
    preferred_categories,
)
from sparkmart.generate.random import below, normal, permute, uniform, unpermute, zipf_rank
from sparkmart.generate.sql import (
    block_of,
    codegen_boundary,
    decimal,
    literal,
    lookup,
    lookup2,
    money,
    pick,
    rounded,
    with_sql,
)

ROWS_PER_PARTITION = 1_000_000
MEAN_QUANTITY = 2.0  # rough mean order quantity, for reorder thresholds
WEEKEND_PROCESSING_HOURS = (0.0, 0.0, 0.0, 0.0, 8.0, 30.0, 14.0)  # warehouse idles at weekends
BULKY_DELIVERY_FACTOR = 1.3
PROCESSING_MEDIAN_HOURS = 16.0


def partitions_for(spark: SparkSession, rows: int) -> int:
    """Enough partitions for every core, and files of at most ROWS_PER_PARTITION rows."""
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / ROWS_PER_PARTITION))


def preference_matrix() -> np.ndarray:
    """Segments x categories matrix of category weights (rows sum to 1)."""
    return np.array([category_weights(s.category_weights) for s in SEGMENTS])


def _permute(index: str, ids: Permutation) -> str:
    return permute(index, ids.n, ids.a, ids.b)


def _range_by_id(spark: SparkSession, n: int, ids: Permutation) -> DataFrame:
    """Rows in id order (1..n) with ``_idx``, the index that decides the row's block."""
    rows = spark.range(0, n, 1, partitions_for(spark, n))
    return with_sql(rows, {"_idx": unpermute("id", ids.n, ids.a, ids.b)})


# --- attributes shared between entities (pure functions of the index) ----------------------


def customer_location(seed: int, customer_index: str) -> str:
    """Index into LOCATIONS of a customer (orders use it for the shipping zone)."""
    return below(uniform(seed, customer_index, "customer/location"), len(LOCATIONS))


def customer_signup_day(plan: GenerationPlan, segment: str, offset: str) -> str:
    """Signup day (relative to start_date) of the member at ``offset`` of a segment block.

    ``first + floor(offset * span / size)``: non-decreasing in the offset, which is what lets the
    calendar count eligible members per day with exact integers (``calendar.signed_up_before``).
    """
    windows = [plan.signup_days(s) for s in range(len(SEGMENTS))]
    first = lookup([w[0] for w in windows], segment)
    span = lookup([w[1] for w in windows], segment)
    size = lookup([max(1, b.size) for b in plan.customer_blocks], segment)
    return f"CAST({first} + ({offset} * {span}) div {size} AS INT)"


def product_price(plan: GenerationPlan, product_index: str, category: str) -> str:
    """Log-normal list price around the category median, in [0.99, 9999.99]."""
    median = lookup([c.median_price for c in CATEGORIES], category)
    sigma = lookup([c.price_sigma for c in CATEGORIES], category)
    z = normal(plan.seed, product_index, "product/price")
    raw = f"{median} * exp({sigma} * {z})"
    return money(f"least(greatest({raw}, 0.99D), 9999.99D)")


def favourite_product_index(
    plan: GenerationPlan, customer_index: str, category: str, slot: str
) -> str:
    """Product index of a customer's favourite number ``slot`` in ``category``.

    A Zipf rank of the category drawn from the hash of (customer, category, slot): popular
    products are everybody's favourites more often, so re-buying favourites leaves each
    product's expected share of orders as it was. Orders and the customer truth both call this.
    """
    slots = len(CATEGORIES) * FAVOURITES_PER_CATEGORY
    key = f"({customer_index} * {slots}L + {category} * {FAVOURITES_PER_CATEGORY} + {slot})"
    size = lookup([max(1, b.size) for b in plan.product_blocks], category)
    starts = [b.start for b in plan.product_blocks]
    rank = zipf_rank(uniform(plan.seed, key, "customer/favourite"), size)
    return f"({lookup(starts, category)} - 1 + {rank})"


def _preferred_category(segment: str, position: int) -> str:
    """The segment's ``position``-th preferred category (0: main; -1 if it has fewer)."""
    preferred = [preferred_categories(s) for s in SEGMENTS]
    return lookup([p[position] if position < len(p) else -1 for p in preferred], segment)


# --- customers -----------------------------------------------------------------------------


def with_customer_segment(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Segment = contiguous block of ``_idx``; the offset in the block orders signups."""
    starts = [b.start for b in plan.customer_blocks]
    heavy_end = starts[CHAMPIONS] + plan.heavy_count()
    return with_sql(
        df,
        {
            "customer_id": "id + 1",
            "segment": f"CAST({block_of('_idx', starts)} AS INT)",
        },
        {
            "_offset": f"_idx - {lookup(starts, 'segment')}",
            "segment_name": lookup([s.name for s in SEGMENTS], "segment"),
            "is_heavy": f"segment = {CHAMPIONS} AND _idx < {heavy_end}",
        },
    )


def with_customer_profile(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Names, a valid email and phone, and a location from small constant lists."""

    def draw(values: tuple[str, ...], salt: str) -> str:
        return lookup(values, below(uniform(plan.seed, "_idx", salt), len(values)))

    digits = {
        width: f"lpad(CAST({below(uniform(plan.seed, '_idx', f'customer/phone{width}'), 10**width)}"
        f" AS STRING), {width}, '0')"
        for width in (3, 4)
    }
    return with_sql(
        df,
        {
            "first_name": draw(FIRST_NAMES, "customer/first"),
            "last_name": draw(LAST_NAMES, "customer/last"),
            "_location": customer_location(plan.seed, "_idx"),
        },
        {
            "email": "concat(lower(first_name), '.', lower(last_name), CAST(customer_id AS STRING),"
            f" '@', {draw(EMAIL_DOMAINS, 'customer/domain')})",
            "phone": f"concat('+1-555-', {digits[3]}, '-', {digits[4]})",
            "city": lookup([loc.city for loc in LOCATIONS], "_location"),
            "country": lookup([loc.country for loc in LOCATIONS], "_location"),
        },
    )


def with_customer_dates(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Signup date from the segment's window; updated_at somewhere between signup and the end."""
    signup_epoch = f"({plan.start_epoch}L + CAST(_signup_day AS BIGINT) * 86400)"
    span = f"({plan.end_epoch - 7200}L - {signup_epoch})"
    update = below(uniform(plan.seed, "_idx", "customer/updated"), span)
    return with_sql(
        df,
        {"_signup_day": customer_signup_day(plan, "segment", "_offset")},
        {
            "signup_date": f"date_add(DATE'{plan.start_date.isoformat()}', _signup_day)",
            "updated_at": f"timestamp_seconds({signup_epoch} + 3600 + {update})",
        },
    )


def with_customer_favourites(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Truth only: the product ids of the customer's favourites, main category's first.

    Heavy customers (the skew scenario) have none: their orders are drawn as before.
    """
    positions = max(len(s.category_weights) for s in SEGMENTS)
    ids = [
        _permute(
            favourite_product_index(plan, "_idx", _preferred_category("segment", p), str(slot)),
            plan.product_ids,
        )
        for p in range(positions)
        for slot in range(FAVOURITES_PER_CATEGORY)
    ]
    valid = [
        f"{_preferred_category('segment', p)} >= 0"
        for p in range(positions)
        for _ in range(FAVOURITES_PER_CATEGORY)
    ]
    listed = ", ".join(f"IF({ok}, {i}, NULL)" for ok, i in zip(valid, ids, strict=True))
    return with_sql(
        df,
        {
            "favourite_products": "IF(is_heavy, CAST(array() AS ARRAY<BIGINT>),"
            f" filter(array({listed}), p -> p IS NOT NULL))",
        },
    )


def customers_base(spark: SparkSession, plan: GenerationPlan) -> DataFrame:
    """Raw customer columns plus truth columns (segment, segment_name, is_heavy,
    favourite_products)."""
    return (
        _range_by_id(spark, plan.n_customers, plan.customer_ids)
        .transform(with_customer_segment, plan)
        .transform(with_customer_profile, plan)
        .transform(codegen_boundary)
        .transform(with_customer_dates, plan)
        .transform(with_customer_favourites, plan)
        .transform(codegen_boundary)
    )


# --- products ------------------------------------------------------------------------------


def with_product_category(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Category = contiguous block of ``_idx``; the offset in the block is the popularity rank."""
    starts = [b.start for b in plan.product_blocks]
    return with_sql(
        df,
        {
            "product_id": "id + 1",
            "_category": f"CAST({block_of('_idx', starts)} AS INT)",
        },
        {
            "_rank": f"_idx - {lookup(starts, '_category')} + 1",
            "category": lookup(CATEGORY_NAMES, "_category"),
        },
    )


def with_product_attributes(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Brand and name from per-category vocabularies; price, cost < price, updated_at."""
    seed = plan.seed

    def draw(salt: str, count: int) -> str:
        return below(uniform(seed, "_idx", salt), count)

    first_update = plan.start_epoch - 400 * 86400
    noun = lookup2([c.nouns for c in CATEGORIES], "_category", draw("product/noun", 6))
    adjective = lookup(ADJECTIVES, draw("product/adjective", len(ADJECTIVES)))
    margin = f"(0.35D + 0.40D * {uniform(seed, '_idx', 'product/cost')})"
    return with_sql(
        df,
        {
            "brand": lookup2([c.brands for c in CATEGORIES], "_category", draw("product/brand", 4)),
            "price": product_price(plan, "_idx", "_category"),
            "updated_at": f"timestamp_seconds({first_update}L"
            f" + {draw('product/updated', plan.end_epoch - first_update)})",
        },
        {
            "name": f"concat_ws(' ', brand, {adjective}, {noun})",
            "cost": money(f"CAST(price AS DOUBLE) * {margin}"),
        },
    )


def with_product_demand(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Expected order share (Zipf within category), reorder threshold and stock level.

    Stock is log-normal around 3.7x the reorder threshold, so about 5% of products start below
    it: the low-inventory alerts of the stream have something to find.
    """
    shares = calendar.expected_category_share(plan, preference_matrix())
    size = lookup([max(1, b.size) for b in plan.product_blocks], "_category")
    share = lookup([float(s) for s in shares], "_category")
    units_per_share = plan.n_orders / plan.days * MEAN_QUANTITY * REORDER_LEAD_DAYS
    stock = f"exp(1.3D + 0.8D * {normal(plan.seed, '_idx', 'product/stock')})"
    return with_sql(
        df,
        {
            "expected_share": f"{share} * (ln(_rank + 1.0D) - ln(CAST(_rank AS DOUBLE)))"
            f" / ln({size} + 1.0D)",
        },
        {
            "reorder_threshold": "CAST(greatest(5, ceil(expected_share"
            f" * {literal(units_per_share)})) AS INT)",
        },
        {"stock_quantity": f"CAST(floor(reorder_threshold * {stock}) AS INT)"},
    )


def products_base(spark: SparkSession, plan: GenerationPlan) -> DataFrame:
    """Raw product columns plus truth inputs (expected_share, reorder_threshold)."""
    return (
        _range_by_id(spark, plan.n_products, plan.product_ids)
        .transform(with_product_category, plan)
        .transform(with_product_attributes, plan)
        .transform(codegen_boundary)
        .transform(with_product_demand, plan)
        .transform(codegen_boundary)
    )


def product_truth(products: DataFrame, plan: GenerationPlan) -> DataFrame:
    """popularity_rank: 1 + the number of products with a higher expected share of orders.

    Computed per product, without a global sort. Within its own category a product is
    outranked by the ``rank - 1`` more popular ones. In another category c the share of rank k
    is ``share_c * ln(1 + 1/k) / ln(size_c + 1)``, so the products with a higher share are those
    of rank ``k < 1 / expm1(share * ln(size_c + 1) / share_c)``; that estimate is then checked
    against the share itself, computed exactly as ``expected_share`` is, one rank either side,
    so the comparison agrees with the shares bit for bit. Ranks are therefore those of SQL
    ``RANK()`` over the shares: 1..n, equal only for bitwise-equal shares (which would need two
    categories with identical parameters).
    """
    shares = calendar.expected_category_share(plan, preference_matrix())
    estimates: dict[str, str] = {}
    outranked: dict[str, str] = {}
    for category, block in enumerate(plan.product_blocks):
        if block.size == 0:
            continue
        share, size = f"{float(shares[category])!r}D", block.size
        threshold = f"1.0D / expm1(expected_share * ln({size} + 1.0D) / {share})"
        estimate = f"_outranked_{category}"
        estimates[estimate] = (
            f"least(greatest(ceil(least({threshold}, {size + 1}.0D)) - 1, 0), {size})"
        )

        def share_at(rank: str, share: str = share, size: int = size) -> str:
            return f"{share} * (ln({rank} + 1.0D) - ln(CAST({rank} AS DOUBLE))) / ln({size} + 1.0D)"

        checked = (
            f"CASE WHEN {estimate} < {size} AND {share_at(f'({estimate} + 1)')} > expected_share"
            f" THEN {estimate} + 1"
            f" WHEN {estimate} >= 1 AND {share_at(estimate)} <= expected_share"
            f" THEN {estimate} - 1 ELSE {estimate} END"
        )
        outranked[f"_outranked_in_{category}"] = (
            f"CASE WHEN _category = {category} THEN _rank - 1 ELSE {checked} END"
        )
    rank = f"CAST(1 + {' + '.join(outranked)} AS BIGINT)"
    names = list(outranked)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    frame = with_sql(products, estimates).transform(codegen_boundary)  # small methods: sql.py
    for half in halves:
        frame = with_sql(frame, {name: outranked[name] for name in half}).transform(
            codegen_boundary
        )
    return with_sql(frame, {"popularity_rank": rank}).select(
        "product_id", "popularity_rank", "reorder_threshold"
    )


# --- orders --------------------------------------------------------------------------------


def hour_frame(spark: SparkSession, plan: GenerationPlan, table: pd.DataFrame) -> DataFrame:
    """The hour table as one partition per slice of equal order counts.

    A one-row-per-partition ``spark.range`` broadcast-joined to the table keeps each slice in
    its own partition, so tasks get equal numbers of orders; sorting the slice's hours (not
    the orders) keeps every file in order_id and time order.
    """
    orders = int(table["orders_in_hour"].sum())
    slices = partitions_for(spark, orders)
    first = table["first_order"] - (int(table["first_order"].min()) if len(table) else 0)
    table = table.assign(_slice=np.minimum(slices - 1, first * slices // max(1, orders)))
    schema = StructType([*calendar.HOUR_TABLE_SCHEMA.fields, StructField("_slice", LongType())])
    hours = spark.createDataFrame(table, schema)
    anchors = spark.range(0, slices, 1, slices).withColumnRenamed("id", "_slice")
    joined = anchors.join(F.broadcast(hours), "_slice").drop("_slice")
    return joined.sortWithinPartitions("first_order")  # a few thousand rows per partition


def with_order_time(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Spread the hour's orders evenly with jitter: order ids stay in time order."""
    jitter = uniform(plan.seed, "_idx", "order/time")
    return with_sql(
        df,
        {"_idx": "first_order + _k"},
        {
            "order_id": "_idx + 1",
            "_order_epoch": "hour_start"
            f" + CAST(floor((_k + {jitter}) / orders_in_hour * 3600) AS BIGINT)",
            "_burst": f"_idx div {FRAUD_BURST}",
        },
        {"order_ts": "timestamp_seconds(_order_epoch)"},
    )


def with_fraud(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Fraud comes in bursts of consecutive orders, mostly at night.

    A burst slot (FRAUD_BURST consecutive order ids) is fraudulent with the hour's probability;
    its first L orders (L uniform in 1..FRAUD_BURST) are fraud and share one customer.
    """
    length = f"1 + {below(uniform(plan.seed, '_burst', 'fraud/length'), FRAUD_BURST)}"
    selected = f"{uniform(plan.seed, '_burst', 'fraud/burst')} < fraud_probability"
    return with_sql(df, {"is_fraud": f"{selected} AND pmod(_idx, {FRAUD_BURST}) < {length}"})


def _by_segment(segment: str, prefix: str) -> str:
    """The per-segment column ``{prefix}{segment}`` of a row, e.g. ``_low_2`` for segment 2."""
    branches = " ".join(f"WHEN {k} THEN {prefix}{k}" for k in range(len(SEGMENTS)))
    return f"CASE {segment} {branches} END"


def _segment_member(plan: GenerationPlan, segment: str, low: str, u: str) -> str:
    """Customer index of a uniform member of offsets ``[low, high)`` of the chosen segment."""
    starts = [b.start for b in plan.customer_blocks]
    low_s, high_s = _by_segment(segment, low), _by_segment(segment, "_high_")
    count = f"greatest({high_s} - {low_s}, 1)"
    return f"{lookup(starts, segment)} + {low_s} + {below(u, count)}"


def _pick_weighted(u: str, weights: list[str]) -> str:
    """Index drawn with probability proportional to ``weights`` (SQL sums, some maybe 0).

    Compares ``u * total`` with running sums; a zero-weight index is never drawn because an
    earlier bound equal to its bound wins first.
    """
    running = [" + ".join(weights[: i + 1]) for i in range(len(weights))]
    return pick(f"({u} * ({running[-1]}))", [f"({r})" for r in running])


def with_eligible_customers(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Per segment, the offsets of members who may order on the row's day.

    ``_high_k``: signed up before the day; ``_low_k``: dropped out before it (segments with a
    lifetime); ``_new_low_k``: signed up before the last NEW_ACCOUNT_DAYS days, so
    ``[_new_low_k, _high_k)`` are new accounts. Exact integer arithmetic, mirrored in numpy by
    ``calendar.signed_up_before``.
    """
    columns: dict[str, str] = {}
    for k in range(len(SEGMENTS)):
        lifetime = plan.lifetime_days(k)
        columns[f"_high_{k}"] = calendar.signed_up_before_sql(plan, k, "day")
        columns[f"_low_{k}"] = (
            calendar.signed_up_before_sql(plan, k, f"day - {lifetime}") if lifetime else "0"
        )
        columns[f"_new_low_{k}"] = calendar.signed_up_before_sql(
            plan, k, f"day - {NEW_ACCOUNT_DAYS}"
        )
    return with_sql(df, columns)


def with_order_segment(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Which kind of customer orders: heavy, a segment chosen by activity, or a fraudster's.

    Regular orders draw the segment by (eligible members x order rate) of the day. Fraud
    bursts use the burst's uniforms (one customer per burst): 70% a brand-new account (opened
    in the last days; its segment by the number of new accounts), else an established one
    (account takeover).
    """
    seed, segments = plan.seed, range(len(SEGMENTS))
    heavy = (
        f"NOT is_fraud AND {uniform(seed, '_idx', 'order/heavy')} < {plan.heavy_order_share!r}D"
        if plan.heavy_count() > 0
        else "false"
    )
    activity = [f"(_high_{k} - _low_{k}) * {SEGMENTS[k].order_rate!r}D" for k in segments]
    new_accounts = [f"(_high_{k} - _new_low_{k})" for k in segments]
    new_account = (
        f"{uniform(seed, '_burst', 'fraud/new')} < {FRAUD_NEW_ACCOUNT_SHARE!r}D"
        f" AND {' + '.join(new_accounts)} > 0"
    )
    return with_sql(
        df,
        {
            "_heavy": heavy,
            "_new_account": new_account,
            "_u_segment": uniform(seed, "_idx", "order/segment"),
            "_u_fraud_segment": uniform(seed, "_burst", "fraud/segment"),
            "_u_new_segment": uniform(seed, "_burst", "fraud/new_segment"),
        },
        {
            "_regular_segment": _pick_weighted("_u_segment", activity),
            "_takeover_segment": _pick_weighted("_u_fraud_segment", activity),
            "_new_segment": _pick_weighted("_u_new_segment", new_accounts),
        },
        {
            "segment": "CAST(CASE WHEN is_fraud AND _new_account THEN _new_segment"
            " WHEN is_fraud THEN _takeover_segment"
            f" WHEN _heavy THEN {CHAMPIONS} ELSE _regular_segment END AS INT)",
        },
    )


def with_order_customer(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """The customer: a uniform member of the chosen segment's eligible range (or a heavy one).

    Members of the range signed up before the order's day, so no order precedes its
    customer's signup.
    """
    seed = plan.seed
    heavy_member = (
        f"{plan.customer_blocks[CHAMPIONS].start}"
        f" + {below(uniform(seed, '_idx', 'order/heavy_pick'), max(1, plan.heavy_count()))}"
    )
    new_member = _segment_member(
        plan, "segment", "_new_low_", uniform(seed, "_burst", "fraud/new_member")
    )
    takeover_member = _segment_member(
        plan, "segment", "_low_", uniform(seed, "_burst", "fraud/member")
    )
    regular_member = _segment_member(
        plan, "segment", "_low_", uniform(seed, "_idx", "order/member")
    )
    return with_sql(
        df,
        {
            "_customer_index": f"CAST(CASE WHEN is_fraud AND _new_account THEN {new_member}"
            f" WHEN is_fraud THEN {takeover_member}"
            f" WHEN _heavy THEN {heavy_member} ELSE {regular_member} END AS BIGINT)",
        },
        {"customer_id": _permute("_customer_index", plan.customer_ids)},
    )


def with_order_product(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Category by the segment's preferences, product by Zipf rank within the category.

    In one of the segment's preferred categories a regular order re-buys one of the customer's
    favourites with probability FAVOURITE_SHARE (heavy customers excepted). Fraudsters prefer
    electronics and jewelry and pick products uniformly (not by popularity).
    """
    seed = plan.seed
    preference = np.cumsum(preference_matrix(), axis=1)
    preference[:, -1] = 1.0
    by_segment = [
        lookup([float(v) for v in preference[:, c]], "segment") for c in range(len(CATEGORIES))
    ]
    fraud_bounds = cumulative(category_weights(FRAUD_CATEGORY_WEIGHTS))
    size = lookup([max(1, b.size) for b in plan.product_blocks], "_category")
    u_product = uniform(seed, "_idx", "order/product")
    starts = [b.start for b in plan.product_blocks]
    preferred = " OR ".join(
        f"_category = {_preferred_category('segment', p)}"
        for p in range(max(len(s.category_weights) for s in SEGMENTS))
    )
    slot = below(uniform(seed, "_idx", "order/favourite_slot"), FAVOURITES_PER_CATEGORY)
    favourite = favourite_product_index(plan, "_customer_index", "_category", slot)
    heavy_start = plan.customer_blocks[CHAMPIONS].start
    heavy_customer = (
        f"(_customer_index >= {heavy_start}"
        f" AND _customer_index < {heavy_start + plan.heavy_count()})"
    )
    return with_sql(
        df,
        {"_u_category": uniform(seed, "_idx", "order/category")},
        {
            "_category": f"CAST(CASE WHEN is_fraud THEN {pick('_u_category', fraud_bounds)}"
            f" ELSE {pick('_u_category', by_segment)} END AS INT)",
        },
        {
            "_favourite": f"NOT is_fraud AND NOT {heavy_customer} AND ({preferred})"
            f" AND {uniform(seed, '_idx', 'order/favourite')} < {FAVOURITE_SHARE!r}D",
        },
        {
            "_product_index": "CAST(CASE WHEN is_fraud"
            f" THEN {lookup(starts, '_category')} + {below(u_product, size)}"
            f" WHEN _favourite THEN {favourite}"
            f" ELSE {lookup(starts, '_category')} - 1 + {zipf_rank(u_product, size)} END"
            " AS BIGINT)",
        },
        {
            "product_id": _permute("_product_index", plan.product_ids),
            "unit_price": product_price(plan, "_product_index", "_category"),
        },
    )


def with_order_basket(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Quantity, discount and payment method by segment; fraud buys many, never discounted."""
    seed = plan.seed

    def u(salt: str) -> str:
        return uniform(seed, "_idx", f"order/{salt}")

    def per_segment(values: list[float]) -> str:
        return lookup(values, "segment")

    extra = per_segment([s.extra_quantity for s in SEGMENTS])
    low = per_segment([s.discount_range[0] for s in SEGMENTS])
    high = per_segment([s.discount_range[1] for s in SEGMENTS])
    chance = per_segment([s.discount_probability for s in SEGMENTS])
    geometric = f"floor(-ln(1.0D - {u('quantity')}) * {extra})"
    drawn = f"({low} + ({high} - {low}) * {u('discount_level')})"
    level = f"{rounded(f'{drawn} * 20')} / 20"  # whole 5% steps
    method = (
        f"CASE WHEN is_fraud THEN {pick('_u_payment', cumulative(FRAUD_PAYMENT_WEIGHTS))}"
        f" ELSE {pick('_u_payment', cumulative(PAYMENT_WEIGHTS))} END"
    )
    return with_sql(
        df,
        {
            "quantity": f"CAST(CASE WHEN is_fraud THEN 3 + {below(u('fraud_quantity'), 6)}"
            f" ELSE 1 + least({geometric}, 11) END AS INT)",
            "discount": decimal(
                f"CASE WHEN is_fraud OR {u('discount')} >= {chance} THEN 0.0D ELSE {level} END",
                4,
                3,
            ),
            "_u_payment": u("payment"),
        },
        {"payment_method": lookup(PAYMENT_METHODS, method)},
    )


def with_order_fulfilment(df: DataFrame, plan: GenerationPlan) -> DataFrame:
    """Processing and delivery times, the satisfaction they drive, and a status by age.

    Processing is slower for weekend orders; delivery depends on the customer's shipping zone
    and bulky categories. Satisfaction (truth only) falls with both times. The status follows
    from the planned timestamps against the end of the history: recent orders are still
    processing or shipped (null shipped_ts/delivered_ts there are legitimate); some are
    cancelled, and unhappy customers return more.
    """
    seed, end = plan.seed, f"{plan.end_epoch}L"

    def u(salt: str) -> str:
        return uniform(seed, "_idx", f"order/{salt}")

    zone = lookup([loc.zone for loc in LOCATIONS], customer_location(seed, "_customer_index"))
    bulky = lookup([BULKY_DELIVERY_FACTOR if c.bulky else 1.0 for c in CATEGORIES], "_category")
    processing = (
        f"{PROCESSING_MEDIAN_HOURS!r}D * exp(0.6D * {normal(seed, '_idx', 'order/processing')})"
        f" + {lookup(WEEKEND_PROCESSING_HOURS, 'weekday')}"
    )
    delivery = (
        f"{lookup(ZONE_DELIVERY_HOURS, zone)} * {bulky}"
        f" * exp(0.35D * {normal(seed, '_idx', 'order/delivery')})"
    )
    satisfaction = (
        "5.4D - 0.025D * _processing_h - 0.010D * _delivery_h + CAST(discount AS DOUBLE)"
        f" + 0.3D * {normal(seed, '_idx', 'order/satisfaction')}"
    )
    returns = f"{u('return')} < 0.02D + CASE WHEN satisfaction < 2.5D THEN 0.15D ELSE 0.0D END"
    confirmed = f"least(_order_epoch + 60 + {below(u('confirm'), 1200)}, {end})"
    return with_sql(
        df,
        {
            "_processing_h": f"least(greatest({processing}, 1.0D), 240.0D)",
            "_delivery_h": f"least(greatest({delivery}, 6.0D), 600.0D)",
        },
        {
            "satisfaction": rounded(f"least(greatest({satisfaction}, 1.0D), 5.0D)", 3),
            "_shipped_epoch": f"_order_epoch + CAST({rounded('_processing_h * 3600')} AS BIGINT)",
        },
        {
            "_delivered_epoch": f"_shipped_epoch + CAST({rounded('_delivery_h * 3600')} AS BIGINT)",
            "_cancel_epoch": "_order_epoch + 60"
            f" + {below(u('cancel_at'), '_shipped_epoch - _order_epoch')}",
        },
        {
            "_return_epoch": f"_delivered_epoch + 86400 * (1 + {below(u('return_at'), 10)})",
        },
        {
            "status": f"CASE WHEN {u('cancel')} < {CANCEL_RATE!r}D AND _cancel_epoch < {end}"
            " THEN 'cancelled'"
            f" WHEN _shipped_epoch >= {end} THEN 'processing'"
            f" WHEN _delivered_epoch >= {end} THEN 'shipped'"
            f" WHEN {returns} AND _return_epoch < {end} THEN 'returned'"
            " ELSE 'delivered' END",
        },
        {
            "shipped_ts": "CASE WHEN status IN ('shipped', 'delivered', 'returned')"
            " THEN timestamp_seconds(_shipped_epoch) END",
            "delivered_ts": "CASE WHEN status IN ('delivered', 'returned')"
            " THEN timestamp_seconds(_delivered_epoch) END",
            "updated_at": "timestamp_seconds(CASE status"
            " WHEN 'cancelled' THEN _cancel_epoch"
            f" WHEN 'processing' THEN {confirmed}"
            " WHEN 'shipped' THEN _shipped_epoch"
            " WHEN 'delivered' THEN _delivered_epoch"
            " ELSE _return_epoch END)",
        },
    )


def orders_base(spark: SparkSession, plan: GenerationPlan, hours: pd.DataFrame) -> DataFrame:
    """Raw order columns plus truth columns (is_fraud, satisfaction, segment).

    ``hours`` is the calendar's hour table or a slice of it: an order depends only on its index
    and its hour row, so a slice yields exactly those orders (the stream's seed events).
    """
    exploded = hour_frame(spark, plan, hours).select(
        "*", F.explode(F.sequence(F.lit(0), F.col("orders_in_hour") - 1)).alias("_k")
    )
    return (
        exploded.transform(with_order_time, plan)
        .transform(codegen_boundary)
        .transform(with_fraud, plan)
        .transform(with_eligible_customers, plan)
        .transform(codegen_boundary)
        .transform(with_order_segment, plan)
        .transform(codegen_boundary)
        .transform(with_order_customer, plan)
        .transform(codegen_boundary)
        .transform(with_order_product, plan)
        .transform(codegen_boundary)
        .transform(with_order_basket, plan)
        .transform(codegen_boundary)
        .transform(with_order_fulfilment, plan)
        .transform(codegen_boundary)
    )
