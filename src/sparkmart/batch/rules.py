"""The silver layer's quality rules, declared as data, and the parameters they depend on.

Each :class:`Rule` names the entity and columns it looks at, carries a Spark ``Column`` that is
true when a row is valid, and says what happens to a row that fails: ``error`` sends it to
quarantine, ``repair`` keeps it in silver with ``fix`` applied and the rule's name recorded in
``_repairs``. One engine (``quality.apply_rules``) applies any list of rules; nothing here runs
a Spark job. Every rule, its reason text and the null-handling policy are listed in
docs/quality.md.

Conventions that keep the rules short and non-overlapping:

- a check that evaluates to null passes: missing values are the business of the ``*_required``
  (error) and ``*_missing`` (repair) rules alone, so one planted null fails one rule;
- checks see the standardised values (trimmed, lower-cased emails, normalised phones, canonical
  countries and categories) and all of them see the values *before* any fix is applied;
- ``kind`` says what sort of check a rule is (not_null, format, range, domain, consistency,
  reference): the scoring against the generator's ground truth matches defects by kind and
  column, not by rule name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType, NumericType, StringType

from sparkmart.generate.params import CATEGORY_NAMES
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS

ERROR = "error"
REPAIR = "repair"
CRITICALITIES = (ERROR, REPAIR)
RULE_KINDS = ("not_null", "format", "range", "domain", "consistency", "reference")

# Ingest problems (``_errors`` of bronze) become error-level quarantine reasons of their own.
MALFORMED_RULE = "malformed_record"
TYPE_MISMATCH_PREFIX = "type_mismatch:"

# Foreign keys: orders.<column> must exist among the keys of <entity>.
REFERENCES: Mapping[str, Mapping[str, str]] = {
    "orders": {"customer_id": "customers", "product_id": "products"},
}


def exists_flag(column: str) -> str:
    """Name of the helper column the reference step adds: true when ``column``'s key exists."""
    return f"_exists_{column}"


@dataclass(frozen=True, eq=False)
class Rule:
    """One declared check: which rows are valid, and what happens to the others."""

    name: str
    entity: str
    columns: tuple[str, ...]
    check: Column  # true (or null) when the row is valid
    criticality: str  # error | repair
    kind: str  # one of RULE_KINDS
    reason: str  # readable text for quarantine rows and docs
    fix: Mapping[str, Column] = field(default_factory=dict)  # repair: new values on failure

    def __post_init__(self) -> None:
        if self.criticality not in CRITICALITIES:
            raise ValueError(f"rule {self.name}: criticality must be error or repair")
        if self.kind not in RULE_KINDS:
            raise ValueError(f"rule {self.name}: unknown kind {self.kind!r}")
        if self.fix and self.criticality != REPAIR:
            raise ValueError(f"rule {self.name}: only repair rules carry a fix")


# --- parameters ----------------------------------------------------------------------------

EMAIL_REGEX = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
# After normalisation every valid phone reads +1-ddd-ddd-dddd (North American numbering).
PHONE_REGEX = r"^\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}$"

DEFAULT_COUNTRY_MAP: Mapping[str, str] = {
    "us": "USA",
    "u.s.": "USA",
    "u.s.a.": "USA",
    "united states": "USA",
    "united states of america": "USA",
    "ca": "Canada",
    "mx": "Mexico",
    "méxico": "Mexico",
    "uk": "United Kingdom",
    "u.k.": "United Kingdom",
    "gb": "United Kingdom",
    "great britain": "United Kingdom",
    "england": "United Kingdom",
    "de": "Germany",
    "deutschland": "Germany",
    "fr": "France",
    "es": "Spain",
    "españa": "Spain",
    "nl": "Netherlands",
    "the netherlands": "Netherlands",
    "holland": "Netherlands",
    "au": "Australia",
}
DEFAULT_CATEGORIES: tuple[str, ...] = CATEGORY_NAMES  # the generator's catalogue
DEFAULT_CATEGORY_MAP: Mapping[str, str] = {
    "home_and_garden": "home_garden",
    "home": "home_garden",
    "garden": "home_garden",
    "jewellery": "jewelry",
    "sport": "sports",
    "book": "books",
    "toy": "toys",
    "clothing": "fashion",
    "apparel": "fashion",
    "cosmetics": "beauty",
    "food": "grocery",
    "auto": "automotive",
}
UNCATEGORIZED = "uncategorized"
DEFAULT_ORDER_STATUSES: tuple[str, ...] = (
    "processing",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
)


@dataclass(frozen=True)
class NullPolicy:
    """Per entity: columns whose null sends the row to quarantine, and columns imputed.

    ``defaults`` maps a column to the value a null is replaced with; ``None`` keeps the null
    (an optional value) but still records the repair, so a missing value is never silent.
    """

    required: tuple[str, ...]
    defaults: Mapping[str, Any]


DEFAULT_NULL_POLICY: Mapping[str, NullPolicy] = {
    "customers": NullPolicy(
        required=("customer_id", "email", "signup_date", "updated_at"),
        defaults={
            "first_name": "Unknown",
            "last_name": "Unknown",
            "city": "Unknown",
            "country": "Unknown",
            "phone": None,
        },
    ),
    "products": NullPolicy(
        required=("product_id", "price", "cost", "stock_quantity", "updated_at"),
        defaults={"name": "Unknown", "category": UNCATEGORIZED, "brand": "Unknown"},
    ),
    "orders": NullPolicy(
        required=(
            "order_id",
            "customer_id",
            "product_id",
            "quantity",
            "unit_price",
            "order_ts",
            "status",
            "updated_at",
        ),
        defaults={"discount": 0, "payment_method": "unknown"},
    ),
}

QUALITY_KEYS = (
    "min_date",
    "as_of",
    "email_regex",
    "country_map",
    "category_map",
    "categories",
    "order_statuses",
    "nulls",
    "strict",
)


def category_token(text: str) -> str:
    """The normal form categories are compared in: lower case, runs of other chars -> '_'.

    Mirrors ``quality.standardise_category`` (the Spark side) for config keys and values.
    """
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


@dataclass(frozen=True)
class QualityParams:
    """Everything the rules depend on, validated once (config ``batch.quality``).

    ``as_of`` is the run's reference time: nothing may be dated after it. ``min_date`` is the
    earliest plausible business date (signups, orders).
    """

    as_of: dt.datetime
    min_date: dt.date = dt.date(2000, 1, 1)
    email_regex: str = EMAIL_REGEX
    country_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COUNTRY_MAP))
    category_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_MAP))
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    order_statuses: tuple[str, ...] = DEFAULT_ORDER_STATUSES
    nulls: Mapping[str, NullPolicy] = field(default_factory=lambda: dict(DEFAULT_NULL_POLICY))
    strict: bool = False

    def __post_init__(self) -> None:
        if self.min_date > self.as_of.date():
            raise ValueError(f"batch.quality: min_date {self.min_date} is after as_of {self.as_of}")
        try:
            re.compile(self.email_regex)
        except re.error as exc:
            raise ValueError(f"batch.quality.email_regex: {exc}") from exc
        for entity, policy in self.nulls.items():
            _check_null_policy(entity, policy)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | None, as_of: dt.datetime | None = None
    ) -> QualityParams:
        """Build from the ``batch.quality`` mapping; ``as_of`` is used when config has none.

        Maps and lists given in config replace the defaults; ``nulls`` replaces the policy of
        the entities it names. Errors name the key and what was expected.
        """
        config = dict(config or {})
        unknown = sorted(set(config) - set(QUALITY_KEYS) - {k for k in config if k[:1] == "_"})
        if unknown:
            raise ValueError(
                f"batch.quality: unknown key(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(QUALITY_KEYS)})"
            )
        configured_as_of = config.get("as_of")
        run_time = _as_datetime(configured_as_of, "as_of") if configured_as_of else as_of
        if run_time is None:
            raise ValueError("batch.quality.as_of: not configured and no run time given")
        values: dict[str, Any] = {"as_of": run_time}
        if config.get("min_date") is not None:
            values["min_date"] = _as_date(config["min_date"], "min_date")
        if config.get("email_regex") is not None:
            values["email_regex"] = _as_str(config["email_regex"], "email_regex")
        if config.get("country_map") is not None:
            values["country_map"] = _as_str_map(config["country_map"], "country_map")
        if config.get("category_map") is not None:
            values["category_map"] = _as_str_map(config["category_map"], "category_map")
        if config.get("categories") is not None:
            values["categories"] = _as_str_list(config["categories"], "categories")
        if config.get("order_statuses") is not None:
            values["order_statuses"] = _as_str_list(config["order_statuses"], "order_statuses")
        if config.get("nulls") is not None:
            values["nulls"] = {**DEFAULT_NULL_POLICY, **_as_null_policies(config["nulls"])}
        if config.get("strict") is not None:
            if not isinstance(config["strict"], bool):
                raise ValueError("batch.quality.strict: expected true or false")
            values["strict"] = config["strict"]
        return cls(**values)

    @property
    def canonical_countries(self) -> dict[str, str]:
        """Lower-cased name or alias -> canonical name (canonical names map to themselves)."""
        mapping = {value.strip().lower(): value for value in self.country_map.values()}
        mapping.update({key.strip().lower(): value for key, value in self.country_map.items()})
        return mapping

    @property
    def canonical_categories(self) -> dict[str, str]:
        """Category token -> canonical category (canonical ones map to themselves)."""
        mapping = {category_token(c): c for c in self.categories}
        mapping.update({category_token(k): v for k, v in self.category_map.items()})
        return mapping


def _as_datetime(value: Any, key: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"batch.quality.{key}: expected an ISO timestamp, got {value!r}") from exc


def _as_date(value: Any, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"batch.quality.{key}: expected an ISO date, got {value!r}") from exc


def _as_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"batch.quality.{key}: expected a string, got {value!r}")
    return value


def _as_str_map(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"batch.quality.{key}: expected a mapping of strings to strings")
    return dict(value)


def _as_str_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ValueError(f"batch.quality.{key}: expected a non-empty list of strings")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"batch.quality.{key}: expected a non-empty list of strings")
    return tuple(value)


def _as_null_policies(value: Any) -> dict[str, NullPolicy]:
    if not isinstance(value, Mapping):
        raise ValueError("batch.quality.nulls: expected a mapping entity -> {required, defaults}")
    policies = {}
    for entity, spec in value.items():
        where = f"batch.quality.nulls.{entity}"
        if entity not in ENTITIES:
            raise ValueError(f"{where}: unknown entity (expected one of {', '.join(ENTITIES)})")
        if not isinstance(spec, Mapping) or set(spec) - {"required", "defaults"}:
            raise ValueError(f"{where}: expected a mapping with keys required and defaults")
        required = _as_str_list(spec.get("required") or [PRIMARY_KEYS[entity]], f"nulls.{entity}")
        defaults = spec.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise ValueError(f"{where}.defaults: expected a mapping column -> value")
        policies[entity] = NullPolicy(tuple(required), dict(defaults))
    return policies


def _check_null_policy(entity: str, policy: NullPolicy) -> None:
    """Columns exist, the key is required, and every default fits its column's type."""
    where = f"batch.quality.nulls.{entity}"
    if entity not in RAW_SCHEMAS:
        raise ValueError(f"{where}: unknown entity")
    schema = RAW_SCHEMAS[entity]
    for name in (*policy.required, *policy.defaults):
        if name not in schema.fieldNames():
            raise ValueError(f"{where}: unknown column {name!r}")
    both = set(policy.required) & set(policy.defaults)
    if both:
        raise ValueError(f"{where}: {', '.join(sorted(both))} both required and defaulted")
    if PRIMARY_KEYS[entity] not in policy.required:
        raise ValueError(f"{where}: the key {PRIMARY_KEYS[entity]} must be required")
    for name, value in policy.defaults.items():
        dtype = schema[name].dataType
        if value is None:
            continue
        if isinstance(dtype, StringType):
            fits = isinstance(value, str)
        elif isinstance(dtype, IntegralType):
            fits = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(dtype, NumericType):  # decimals and floating point
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:  # dates and timestamps
            fits = False
        if not fits:
            raise ValueError(
                f"{where}.defaults.{name}: {value!r} does not fit {dtype.simpleString()} "
                "(dates and timestamps cannot be imputed: make them required)"
            )


# --- the rule catalogue --------------------------------------------------------------------


def _col(name: str) -> Column:
    return F.col(name)


def timestamp_literal(value: dt.datetime) -> Column:
    """A timestamp literal: aware values are exact instants, naive ones use the session zone."""
    if value.tzinfo is not None:
        return F.timestamp_micros(F.lit(int(value.timestamp() * 1_000_000)))
    return F.lit(value.isoformat(sep=" ")).cast("timestamp")


def null_rules(entity: str, policy: NullPolicy) -> list[Rule]:
    """``<column>_required`` (error) and ``<column>_missing`` (repair) rules of one entity."""
    schema = RAW_SCHEMAS[entity]
    rules = [
        Rule(
            f"{name}_required",
            entity,
            (name,),
            _col(name).isNotNull(),
            ERROR,
            "not_null",
            f"{name} is missing (required)",
        )
        for name in policy.required
    ]
    for name, default in policy.defaults.items():
        if default is None:
            fix: dict[str, Column] = {}
            reason = f"{name} is missing (optional: kept empty)"
        else:
            fix = {name: F.lit(default).cast(schema[name].dataType)}
            reason = f"{name} is missing (set to {default!r})"
        rules.append(
            Rule(f"{name}_missing", entity, (name,), _col(name).isNotNull(), REPAIR, "not_null",
                 reason, fix)
        )  # fmt: skip
    return rules


def _not_future(entity: str, as_of: Column, params: QualityParams) -> Rule:
    return Rule(
        "updated_at_not_future",
        entity,
        ("updated_at",),
        _col("updated_at") <= as_of,
        ERROR,
        "range",
        f"updated_at is after the run's as-of time {params.as_of.isoformat(sep=' ')}",
    )


def customer_rules(params: QualityParams) -> list[Rule]:
    as_of = timestamp_literal(params.as_of)
    return [
        Rule(
            "email_format",
            "customers",
            ("email",),
            _col("email").rlike(params.email_regex),
            ERROR,
            "format",
            "email is not a valid address",
        ),
        Rule(
            "signup_date_in_range",
            "customers",
            ("signup_date",),
            _col("signup_date").between(F.lit(params.min_date), F.to_date(as_of)),
            ERROR,
            "range",
            f"signup_date is before {params.min_date} or after the as-of date",
        ),
        _not_future("customers", as_of, params),
        Rule(
            "phone_format",
            "customers",
            ("phone",),
            _col("phone").rlike(PHONE_REGEX),
            REPAIR,
            "format",
            "phone is not a valid number (removed)",
            {"phone": F.lit(None).cast("string")},
        ),
    ]


def product_rules(params: QualityParams) -> list[Rule]:
    as_of = timestamp_literal(params.as_of)
    return [
        *[
            Rule(
                f"{name}_non_negative",
                "products",
                (name,),
                _col(name) >= 0,
                ERROR,
                "range",
                f"{name} is negative",
            )
            for name in ("price", "cost", "stock_quantity")
        ],
        _not_future("products", as_of, params),
        Rule(
            "category_known",
            "products",
            ("category",),
            _col("category").isin(*params.categories),
            REPAIR,
            "domain",
            f"category is not a known category (set to {UNCATEGORIZED!r})",
            {"category": F.lit(UNCATEGORIZED)},
        ),
    ]


def order_rules(params: QualityParams) -> list[Rule]:
    as_of = timestamp_literal(params.as_of)
    min_ts = F.lit(params.min_date.isoformat()).cast("timestamp")
    return [
        Rule(
            "quantity_positive",
            "orders",
            ("quantity",),
            _col("quantity") > 0,
            ERROR,
            "range",
            "quantity is zero or negative",
        ),
        Rule(
            "unit_price_non_negative",
            "orders",
            ("unit_price",),
            _col("unit_price") >= 0,
            ERROR,
            "range",
            "unit_price is negative",
        ),
        Rule(
            "discount_in_range",
            "orders",
            ("discount",),
            _col("discount").between(0, 1),
            ERROR,
            "range",
            "discount is outside [0, 1]",
        ),
        Rule(
            "order_ts_in_range",
            "orders",
            ("order_ts",),
            _col("order_ts").between(min_ts, as_of),
            ERROR,
            "range",
            f"order_ts is before {params.min_date} or after the run's as-of time",
        ),
        Rule(
            "order_timeline",
            "orders",
            ("order_ts", "shipped_ts", "delivered_ts", "updated_at"),
            (_col("order_ts") <= _col("shipped_ts"))
            & (_col("shipped_ts") <= _col("delivered_ts"))
            & (_col("order_ts") <= _col("updated_at")),
            ERROR,
            "consistency",
            "timestamps out of order (order_ts <= shipped_ts <= delivered_ts, "
            "order_ts <= updated_at)",
        ),
        _not_future("orders", as_of, params),
        Rule(
            "status_known",
            "orders",
            ("status",),
            _col("status").isin(*params.order_statuses),
            ERROR,
            "domain",
            f"status is not one of {', '.join(params.order_statuses)}",
        ),
        *[
            Rule(
                f"{target.rstrip('s')}_exists",
                "orders",
                (column,),
                _col(exists_flag(column)),
                ERROR,
                "reference",
                f"{column} is not a known {target.rstrip('s')} (orphan)",
            )
            for column, target in REFERENCES["orders"].items()
        ],
    ]


VALIDITY_RULES = {"customers": customer_rules, "products": product_rules, "orders": order_rules}


def entity_rules(params: QualityParams) -> dict[str, list[Rule]]:
    """Every rule per entity, in the order they are reported: required, validity, imputed.

    When two repair rules fix the same column, the first failing one in this order wins.
    """
    catalogue = {}
    for entity in ENTITIES:
        policy = params.nulls[entity]
        nulls = null_rules(entity, policy)
        required = [r for r in nulls if r.criticality == ERROR]
        imputed = [r for r in nulls if r.criticality == REPAIR]
        catalogue[entity] = [*required, *VALIDITY_RULES[entity](params), *imputed]
    return catalogue


def ingest_reasons(entity: str) -> dict[str, str]:
    """Reason texts for the ingest errors an entity's bronze rows can carry."""
    reasons = {MALFORMED_RULE: f"the line could not be read as a {entity.rstrip('s')} record"}
    for f in RAW_SCHEMAS[entity].fields:
        reasons[f"{TYPE_MISMATCH_PREFIX}{f.name}"] = (
            f"{f.name} does not convert to {f.dataType.simpleString()}"
        )
    return reasons
