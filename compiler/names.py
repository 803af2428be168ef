"""Python names for pplang identifiers in generated code.

A pplang identifier that is a Python keyword, or a name generated code itself uses (`jax`, `jnp`,
`rt`, `D`, and `max`/`min` in size expressions), gets a trailing underscore. Identifiers starting
with `_` are rejected by the checker, so they never meet the generator's own temporaries.
"""

import keyword

RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"jax", "jnp", "rt", "D", "lax", "max", "min"}


def py_name(name: str) -> str:
    return name + "_" if name in RESERVED else name


def address_var(address: str) -> str:
    """The variable that holds a choice in generated code: `u/a` (choice `a` of submodel call `u`)
    is `u__a`; the checker names variables this way and everything else looks them up this way."""
    return py_name(address.replace("/", "__"))


def var_address(var: str) -> str:
    """The name a variable of generated code stands for: the inverse of `address_var`."""
    base = var[:-1] if var.endswith("_") and var[:-1] in RESERVED else var
    return base.replace("__", "/")
