"""Tests mirror the package: compiler/ (front ends to code generation), runtime/, stdlib/ (float64/
holds the 64-bit comparisons with scipy, run in their own process), inference/ (each family checked
against exact answers), api/ (Python API, CLI, docs, examples, benchmarks). This folder is on
sys.path, so every test can import the exact reference algorithms in `references.py`."""
