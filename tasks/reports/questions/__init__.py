"""The questions of the pre-registered plan (docs/preregistration.md), one module each: which runs
count (:mod:`tasks.reports.preregistration`), the primary test the plan names, and the secondary
results labelled as such."""
