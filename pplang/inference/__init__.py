"""Inference families, one module each: importance sampling, variational inference and its
automatic guides, particle filtering, amortized posteriors."""
