"""QC reports: one self-contained HTML file per specimen, and a batch summary page + CSV.

The report shows whatever a specimen holds (sections appear when their nodes exist), however the
specimen was made: by a recipe (``metallo analyze``) or command by command (``metallo report``).
"""

from metallo.report._figures import histogram_figure
from metallo.report._html import report_is_current, report_key, write_batch_summary, write_report
from metallo.report._qc import (
    across_parameters,
    check_limits,
    failed_upstream,
    measured_fractions,
    qc_passed,
    qc_status,
    qc_verdict,
    quality_checks,
)
from metallo.report._sections import (
    Section,
    ebsd_key_figures,
    grain_size_line,
    misorientation_line,
    quantity_lines,
    registration_key_figures,
    report_sections,
    stored_misorientation_summary,
    texture_line,
    twin_area_text,
    twin_random_text,
)

__all__ = [
    "Section",
    "across_parameters",
    "check_limits",
    "ebsd_key_figures",
    "failed_upstream",
    "grain_size_line",
    "histogram_figure",
    "measured_fractions",
    "misorientation_line",
    "qc_passed",
    "qc_status",
    "qc_verdict",
    "quality_checks",
    "quantity_lines",
    "registration_key_figures",
    "report_is_current",
    "report_key",
    "report_sections",
    "stored_misorientation_summary",
    "texture_line",
    "twin_area_text",
    "twin_random_text",
    "write_batch_summary",
    "write_report",
]
