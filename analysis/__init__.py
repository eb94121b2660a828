"""The report scripts of a checkout: ``python -m analysis.report RUN_DIR ... --out DIR`` writes report.md with its plots.

Built on :mod:`metarl.analysis` (loading runs, information-gain curves, regret, figures and CSV; docs/analysis.md)
and :mod:`metarl.metrics`; these modules only draw the report's figures and write its sections. Not part of the
installed package: run them from the repository root.
"""
