"""Ray's autoscaler on RayDog: `provider: {type: external, module: raydog_core.autoscaler.RayDogNodeProvider}`."""

from raydog_core.autoscaler.provider import RayDogNodeProvider

__all__ = ["RayDogNodeProvider"]
