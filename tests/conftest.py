"""Shared test configuration: the `raydog` pytest plugin (installed with the package) provides the
fixtures (`raydog_home`, `local_backend`, the emulator and service fixtures)."""
