"""RayDog's test suite (a package so that `tests.fault_matrix` can be loaded as a plugin)."""
