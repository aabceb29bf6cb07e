"""The metallo error hierarchy.

Every error a user can cause with bad input is a :class:`MetalloError`. Its message names
the file, node or field at fault and what was expected, in one line, so that the CLI can
print it without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataNotFoundError",
    "FormatError",
    "MetalloError",
    "ModelError",
    "RegistrationError",
    "SchemaError",
    "UnknownNameError",
]


class MetalloError(Exception):
    """Base class of every error metallo raises for bad input or a failed step."""


class FormatError(MetalloError, ValueError):
    """A file is not in the format it claims (truncated, foreign, malformed)."""


class SchemaError(MetalloError, ValueError):
    """A container node, recipe or attribute violates its JSON Schema."""


class ConfigError(MetalloError, ValueError):
    """A parameter, option or configuration value is not valid."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistrationError(MetalloError, RuntimeError):
    """Image registration failed or was asked to do something impossible."""


class ModelError(MetalloError, RuntimeError):
    """A model, checkpoint or training setup is unusable."""


class ConflictError(MetalloError, RuntimeError):
    """Another writer holds or has changed a file since it was read; nothing was written."""


class DataNotFoundError(MetalloError, FileNotFoundError):
    """An example data file is neither in ``METALLO_DATA`` nor downloadable (offline, no address)."""
