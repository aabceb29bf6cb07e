"""QC reports: one self-contained HTML file per specimen, and a batch summary page + CSV."""

from metallo.report._html import write_batch_summary, write_report

__all__ = ["write_batch_summary", "write_report"]
