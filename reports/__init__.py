"""reports: tables, HTML and plots rendered from results files only (no torch needed)."""
