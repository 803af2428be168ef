"""Exact comparisons of densities and bijections with scipy need float64. These tests run in a pytest
process of their own (see .ci/test), so the rest of the suite keeps JAX's float32 default, as users do."""

import jax

jax.config.update("jax_enable_x64", True)
