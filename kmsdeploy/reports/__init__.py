"""Activation reports from the KMS hosts' own 12290 events (reference A.4-A.6, E.5).

The SCOM KMS management pack's reports without SCOM: ``collect`` reads new 12290 events
from every KMS host (one runner call per host, incremental from a per-host bookmark)
into a local SQLite store; ``activations``, ``history``, ``licensing``, ``expiring`` and
``vm`` render from that store as text, JSON, CSV or a self-contained HTML page.

Roles: :mod:`.parse` (12290 shapes, pure), :mod:`.codes` (names from the reference),
:mod:`.store` (SQLite, versioned migrations, idempotent ingest), :mod:`.queries` (the
five reports, pure over the store with an injectable clock), :mod:`.render`,
:mod:`.population` (deterministic simulated clients for the lab), :mod:`.collect`
(the only network I/O) and :mod:`.command` (CLI glue). See docs/reports.md.
"""
