"""``kmsdeploy health``: is volume activation healthy at every site?

Roles, one module each:

- :mod:`.rules`   PURE: facts + thresholds + clock -> per-check status, reason, evidence;
- :mod:`.collect` I/O: one WinRM round trip per KMS host (parallel), TCP 1688 probes and
  ``_vlmcs._tcp`` SRV lookups from the control node;
- :mod:`.render`  table, JSON (schemas/health.schema.json) and Prometheus text format;
- :mod:`.command` the ``health`` verb (``add_parser`` / ``run``), monitoring-plugin exit codes.

See docs/health.md.
"""
