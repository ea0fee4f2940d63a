"""prep: turn raw videos into versioned Parquet frame stores (decode, detect, crop, resize, shard)."""

from plumbing.errors import AnimbenchError

__all__ = ["AnimbenchError"]
