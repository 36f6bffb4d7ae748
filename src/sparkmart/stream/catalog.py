"""The customers and products the order simulator draws from, read without Spark.

The simulator has to start in well under a second, so the catalog is read with pyarrow from the
batch gold layer (after ``sparkmart batch``) or, failing that, from the generator's raw Parquet
(after ``sparkmart generate``). Either way the stream's customer and product ids are ones the batch
data knows, so streamed orders join the gold tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sparkmart.config import Settings
from sparkmart.io.files import dataset_path
from sparkmart.spark_utils import get_logger

CatalogSource = Literal["gold", "raw"]
CATALOG_SOURCES: tuple[str, ...] = ("gold", "raw")

# A product that never sold still gets this many "orders" of popularity weight, so every product
# of the catalogue can appear in the stream (but rarely).
PRODUCT_WEIGHT_FLOOR = 0.5


class CatalogError(FileNotFoundError):
    """The catalog cannot be read: no gold or raw data, or it holds no usable rows."""


@dataclass(frozen=True)
class CatalogDirs:
    """Where the two catalog sources live: the gold layer and the generator's raw root."""

    gold: Path
    raw: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> CatalogDirs:
        return cls(gold=settings.path("gold"), raw=settings.path("raw"))


@dataclass(frozen=True, eq=False)
class Catalog:
    """Customer and product ids with what the simulator needs to draw realistic orders.

    Arrays are aligned per entity: ``product_prices[i]`` is the price of ``product_ids[i]``.
    ``product_weights`` is the relative popularity (past orders); ``customer_orders`` the past
    order count per customer and ``customer_median_order_value`` their median order value (NaN
    where unknown) — both None when the source does not have them (raw data).
    """

    customer_ids: np.ndarray
    product_ids: np.ndarray
    product_prices: np.ndarray
    product_weights: np.ndarray
    customer_orders: np.ndarray | None = None
    customer_median_order_value: np.ndarray | None = None
    source: str = "inline"

    def __post_init__(self) -> None:
        where = f"catalog ({self.source})"
        for name in ("customer_ids", "product_ids"):
            ids = getattr(self, name)
            if ids.ndim != 1 or len(ids) == 0:
                raise CatalogError(f"{where}: {name} is empty")
            if len(np.unique(ids)) != len(ids):
                raise CatalogError(f"{where}: {name} holds duplicate ids")
        products = len(self.product_ids)
        for name in ("product_prices", "product_weights"):
            if len(getattr(self, name)) != products:
                raise CatalogError(f"{where}: {name} does not match product_ids in length")
        if not np.all(np.isfinite(self.product_prices) & (self.product_prices > 0)):
            raise CatalogError(f"{where}: every product price must be a positive number")
        if not np.all(np.isfinite(self.product_weights) & (self.product_weights >= 0)):
            raise CatalogError(f"{where}: product weights must be non-negative numbers")
        if self.product_weights.sum() <= 0:
            raise CatalogError(f"{where}: product weights add up to zero")
        customers = len(self.customer_ids)
        for name in ("customer_orders", "customer_median_order_value"):
            values = getattr(self, name)
            if values is not None and len(values) != customers:
                raise CatalogError(f"{where}: {name} does not match customer_ids in length")

    @property
    def customers(self) -> int:
        return len(self.customer_ids)

    @property
    def products(self) -> int:
        return len(self.product_ids)

    @classmethod
    def from_records(
        cls,
        customer_ids: Sequence[int],
        product_prices: Mapping[int, float],
        product_orders: Mapping[int, float] | None = None,
        customer_orders: Mapping[int, int] | None = None,
        customer_median_order_value: Mapping[int, float] | None = None,
        source: str = "inline",
    ) -> Catalog:
        """A catalog from plain Python values (tests, notebooks)."""
        customers = pd.DataFrame({"customer_id": list(customer_ids)})
        products = pd.DataFrame(
            {"product_id": list(product_prices), "price": list(product_prices.values())}
        )
        performance = ltv = None
        if product_orders is not None:
            performance = pd.DataFrame(
                {"product_id": list(product_orders), "orders": list(product_orders.values())}
            )
        if customer_orders is not None or customer_median_order_value is not None:
            keys = sorted(set(customer_orders or {}) | set(customer_median_order_value or {}))
            ltv = pd.DataFrame(
                {
                    "customer_id": keys,
                    "orders": [(customer_orders or {}).get(k, 0) for k in keys],
                    "median_order_value": [
                        (customer_median_order_value or {}).get(k, np.nan) for k in keys
                    ],
                }
            )
        return cls.from_frames(customers, products, performance, ltv, source=source)

    @classmethod
    def from_frames(
        cls,
        customers: pa.Table | pd.DataFrame,
        products: pa.Table | pd.DataFrame,
        product_orders: pa.Table | pd.DataFrame | None = None,
        customer_stats: pa.Table | pd.DataFrame | None = None,
        source: str = "inline",
    ) -> Catalog:
        """Build from tables shaped like the gold layer.

        ``customers`` needs ``customer_id``; ``products`` ``product_id`` and ``price``;
        ``product_orders`` (like gold ``product_performance``) ``product_id`` and ``orders``;
        ``customer_stats`` (like gold ``customer_ltv``) ``customer_id`` and ``orders`` and/or
        ``median_order_value``. Rows without an id or with no positive price are skipped and
        duplicate ids keep their first row: raw data carries planted defects.
        """
        customer_frame = _as_pandas(customers, ("customer_id",), f"{source} customers")
        product_frame = _as_pandas(products, ("product_id", "price"), f"{source} products")
        customer_frame = _valid_ids(customer_frame, "customer_id")
        product_frame = _valid_ids(product_frame, "product_id")
        prices = pd.to_numeric(product_frame["price"], errors="coerce").astype("float64")
        product_frame = product_frame.assign(price=prices)[prices.notna() & (prices > 0)]

        weights = np.full(len(product_frame), PRODUCT_WEIGHT_FLOOR)
        if product_orders is not None:
            orders = _as_pandas(product_orders, ("product_id", "orders"), f"{source} orders")
            per_product = _valid_ids(orders, "product_id").set_index("product_id")["orders"]
            past = product_frame["product_id"].map(per_product).astype("float64").fillna(0.0)
            weights = weights + past.clip(lower=0).to_numpy()

        customer_orders = median_value = None
        if customer_stats is not None:
            stats = _valid_ids(
                _as_pandas(customer_stats, ("customer_id",), f"{source} customer stats"),
                "customer_id",
            ).set_index("customer_id")
            ids = customer_frame["customer_id"]
            if "orders" in stats:
                customer_orders = ids.map(stats["orders"]).fillna(0).to_numpy(dtype="int64")
            if "median_order_value" in stats:
                median_value = ids.map(stats["median_order_value"]).to_numpy(dtype="float64")
        return cls(
            customer_ids=customer_frame["customer_id"].to_numpy(dtype="int64"),
            product_ids=product_frame["product_id"].to_numpy(dtype="int64"),
            product_prices=np.round(product_frame["price"].to_numpy(dtype="float64"), 2),
            product_weights=weights,
            customer_orders=customer_orders,
            customer_median_order_value=median_value,
            source=source,
        )


def _as_pandas(table: pa.Table | pd.DataFrame, required: Sequence[str], what: str) -> pd.DataFrame:
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise CatalogError(f"{what}: missing column(s) {', '.join(missing)}")
    return frame


def _valid_ids(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    ids = pd.to_numeric(frame[key], errors="coerce")
    kept = frame.assign(**{key: ids})[ids.notna()]
    return kept.astype({key: "int64"}).drop_duplicates(subset=key, keep="first")


def _read(path: Path, columns: Sequence[str]) -> pa.Table:
    """Read ``columns`` of a Parquet dataset directory (Spark's ``_``/``.`` files are ignored)."""
    table = pq.read_table(path, columns=list(columns))
    # Decimal prices and the like: plain float64 is all the simulator needs.
    for index, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            table = table.set_column(index, field.name, pc.cast(table[index], pa.float64()))
    return table


def _read_gold(gold: Path) -> Catalog:
    return Catalog.from_frames(
        _read(gold / "customers", ["customer_id"]),
        _read(gold / "products", ["product_id", "price"]),
        _read(gold / "product_performance", ["product_id", "orders"]),
        _read(gold / "customer_ltv", ["customer_id", "orders", "median_order_value"]),
        source=f"gold {gold}",
    )


def _read_raw(raw: Path) -> Catalog:
    orders_dir = dataset_path(raw, "parquet", "orders")
    product_orders = None
    if orders_dir.exists():
        ids = _read(orders_dir, ["product_id"]).column("product_id")
        counts = pc.value_counts(ids.drop_null()).flatten()
        product_orders = pa.table({"product_id": counts[0], "orders": counts[1]})
    return Catalog.from_frames(
        _read(dataset_path(raw, "parquet", "customers"), ["customer_id"]),
        _read(dataset_path(raw, "parquet", "products"), ["product_id", "price"]),
        product_orders,
        None,
        source=f"raw {raw}",
    )


def _gold_ready(gold: Path) -> bool:
    needed = ("customers", "products", "product_performance", "customer_ltv")
    return all((gold / name).is_dir() for name in needed)


def _raw_ready(raw: Path) -> bool:
    return all(dataset_path(raw, "parquet", name).is_dir() for name in ("customers", "products"))


def load_catalog(where: Settings | CatalogDirs, source: CatalogSource | str = "gold") -> Catalog:
    """Read the catalog from ``source`` ("gold" or "raw"); gold falls back to raw when missing.

    ``where`` is the project settings (``paths.gold`` / ``paths.raw``) or explicit directories.
    """
    if source not in CATALOG_SOURCES:
        raise ValueError(
            f"catalog source should be one of {', '.join(CATALOG_SOURCES)}, got {source!r}"
        )
    dirs = CatalogDirs.from_settings(where) if isinstance(where, Settings) else where
    log = get_logger("stream.catalog")
    if source == "gold" and _gold_ready(dirs.gold):
        catalog = _read_gold(dirs.gold)
    elif _raw_ready(dirs.raw):
        if source == "gold":
            log.warning("no gold layer at %s: reading the catalog from raw %s", dirs.gold, dirs.raw)
        catalog = _read_raw(dirs.raw)
    else:
        looked = f"gold {dirs.gold}, " if source == "gold" else ""
        raise CatalogError(
            f"no catalog to simulate orders from (looked for {looked}raw Parquet "
            f"{dataset_path(dirs.raw, 'parquet', '<entity>')}): "
            "run `sparkmart batch` or `sparkmart generate` first"
        )
    log.info(
        "catalog from %s: %s customers, %s products",
        catalog.source,
        f"{catalog.customers:,}",
        f"{catalog.products:,}",
    )
    return catalog
