"""What generated code and the user API call at run time. Never imports the compiler."""

from .context import Context, MissingValue
from .ops import (
    ZERO,
    Score,
    add,
    buffer,
    concat,
    factor,
    key,
    ones,
    place,
    put,
    rows,
    scan,
    select,
    size,
    store,
    sub,
    to_int,
    to_real,
    total,
    zeros,
)

__all__ = ["Context", "MissingValue", "ZERO", "Score", "add", "buffer", "concat", "ones", "zeros", "factor", "key", "place", "put", "rows", "scan",
           "select", "size", "store", "sub", "to_int", "to_real", "total"]
