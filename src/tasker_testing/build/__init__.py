"""Image building: tiers, content-hash tags, the engine probe and local base images."""

from .builder import BuildError, ensure_images, plan
from .engine import Engine, EngineError, probe
from .images import ImageSpec, content_hash
from .modes import BuildMode, BuildModeError

__all__ = [
    "BuildError",
    "BuildMode",
    "BuildModeError",
    "Engine",
    "EngineError",
    "ImageSpec",
    "content_hash",
    "ensure_images",
    "plan",
    "probe",
]
