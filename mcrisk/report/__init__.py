"""The report an investment committee reads: report.html with its figures, made from a finished run folder."""
