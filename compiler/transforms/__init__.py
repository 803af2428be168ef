"""Program transformations that rewrite a checked program: `adev` (gradient estimators of
objectives) and `smc` (particle filters). Each generates code a person can read."""
