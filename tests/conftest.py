"""Shared test configuration: the `raydog` pytest plugin (installed with the package) provides the
fixtures (`raydog_home`, `local_backend`, the emulator and service fixtures); `tests.fault_matrix`
records the fault matrix (the `fault_case` mark and the `fault_leaks` fixture)."""

pytest_plugins = ["tests.fault_matrix"]
