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
    "user_message",
]

#: Longest error message shown to a user; the rest is cut (a message quotes file content).
MAX_MESSAGE_CHARS = 500


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


def user_message(exc: BaseException | str, *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An exception's message as one printable line of at most ``limit`` characters.

    Whitespace runs become one space, control characters (NUL bytes of a corrupt file) are
    shown as ``\\xNN``, and a longer message is cut with a note of how much was left out.

    Examples
    --------
    >>> user_message(FormatError("a.ang: line 3:\\n bad value '\\x00\\x00'"))
    "a.ang: line 3: bad value '\\\\x00\\\\x00'"
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    if len(text) > limit:
        text = f"{text[: limit - 40]}... ({len(text) - limit + 40} more characters)"
    return text
