"""Fault-matrix tests for the builder and `ray up` entry points (see tests/fault_matrix.py)."""
