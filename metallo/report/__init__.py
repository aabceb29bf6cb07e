"""QC reports: one self-contained HTML file per specimen, and a batch summary page + CSV."""

from metallo.report._html import report_is_current, report_key, write_batch_summary, write_report

__all__ = ["report_is_current", "report_key", "write_batch_summary", "write_report"]
