"""Counter-based random numbers as Spark SQL expression text.

Every random value is a pure function of (seed, row key, salt): ``xxhash64`` of the row key and a
64-bit stream constant derived from (seed, salt), masked to 53 bits and scaled to [0, 1).
Nothing depends on partitioning, task order or retries, so the same seed and counts give the
same content on one core or a cluster. Every draw in the generator uses its own salt, i.e. its
own independent stream. Keys must be BIGINT (an INT hashes differently). Arguments named
``key``, ``u`` and ``n`` are SQL text (a column name or an expression); see ``sql.py`` for why.
"""

from __future__ import annotations

import hashlib
import math

MASK_53 = (1 << 53) - 1
SCALE_53 = float(1 << 53)


def stream_id(seed: int, salt: str) -> int:
    """A signed 64-bit constant naming one random stream: (seed, salt) hashed on the driver.

    Hashing two longs in Spark is several times cheaper than hashing the salt string per row.
    """
    digest = hashlib.blake2b(f"{seed}/{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def uniform(seed: int, key: str, salt: str) -> str:
    """U[0, 1) from the hash of (key, stream of seed and salt); 53 bits, exact as a double."""
    return f"((xxhash64({key}, {stream_id(seed, salt)}L) & {MASK_53}L) / {SCALE_53!r}D)"


def normal(seed: int, key: str, salt: str) -> str:
    """Standard normal by Box-Muller from two independent uniforms (1 - u keeps log finite)."""
    u1, u2 = uniform(seed, key, f"{salt}/1"), uniform(seed, key, f"{salt}/2")
    return f"(sqrt(-2.0D * ln(1.0D - {u1})) * cos({2 * math.pi!r}D * {u2}))"


def below(u: str, n: str | int) -> str:
    """Integer in [0, n) from a uniform (n >= 1)."""
    return f"CAST(least(floor({u} * ({n})), ({n}) - 1) AS BIGINT)"


def zipf_rank(u: str, n: str | int) -> str:
    """Rank in [1, n] with P(rank = k) = ln((k+1)/k) / ln(n+1): Zipf with exponent ~1.

    Inverse CDF of the log-uniform distribution, floor((n+1)^u): rank 1 is the most popular.
    """
    return f"CAST(least(floor(pow(({n}) + 1.0D, {u})), {n}) AS BIGINT)"


def permute(index: str, n: int, a: int, b: int) -> str:
    """Bijective id in 1..n for an index in 0..n-1 (``a`` coprime with ``n``)."""
    return f"(pmod({index} * {a}L + {b}L, {n}L) + 1)"


def unpermute(position: str, n: int, a: int, b: int) -> str:
    """The index whose id is ``position + 1``: the inverse of ``permute``."""
    inverse = pow(a, -1, n) if n > 1 else 0
    return f"pmod(({position} - {b}L) * {inverse}L, {n}L)"
