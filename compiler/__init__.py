"""The pplang compiler: typed IR, analyses, transformations and code generation."""
