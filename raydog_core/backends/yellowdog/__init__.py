"""The YellowDog backend: a Ray cluster as one work requirement, a provisioned worker pool per node pool."""
