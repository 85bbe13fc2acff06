"""The `raydog` pytest plugin (entry point `pytest11`): fixtures for testing flows and DAGs offline."""

from raydog_core.testing.emulator_fixtures import yellowdog_emulator  # noqa: F401
from raydog_core.testing.local import local_backend, raydog_home  # noqa: F401
from raydog_core.testing.services import redis_server, ssh_server  # noqa: F401
