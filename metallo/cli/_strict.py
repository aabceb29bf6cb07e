"""``--strict``: the exit code of a command whose result was made but failed its quality check.

Errors (bad input, a step that could not run) exit 1. A result that was written but says it
cannot be trusted (a registration flagged failed, a node whose quality record failed, phase
fractions outside the recipe's limits or resting on a failed node) exits 0 by default, with the
failure printed and in the outputs, and :data:`EXIT_CHECK_FAILED` with ``--strict``, so that a
script or a lab's pipeline stops on it without parsing the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Exit code of a ``--strict`` command whose result failed its quality check.
EXIT_CHECK_FAILED = 3
STRICT_HELP = "Exit 3 when the result failed its quality check (it is still written); errors exit 1."


def verdict_text(check: Mapping[str, Any] | None, *, failed: str = "FAIL") -> str:
    """`` (PASS)``, `` (FAIL: reasons)`` or nothing, for a node's :func:`metallo.report.quality_checks` entry."""
    if check is None:
        return ""
    return " (PASS)" if check["passed"] else f" ({failed}: " + "; ".join(map(str, check["reasons"])) + ")"
