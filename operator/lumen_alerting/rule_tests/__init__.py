"""``lumenctl test``'s engine: promtool unit tests generated from the policies themselves.

- ``burn_rate_cases`` is pure (policies in, test files out; no I/O, no clock): for every SLO's
  burn-rate alerts, cases just above and just below each window pair's threshold.
- ``promtool`` writes those files to a directory, runs ``promtool test rules`` on each and
  reports one line per SLO and tier.
"""
