"""Invoicing: billing cycles, idempotent and crash-safe batch runs, late-usage adjustments,
and invoice documents (JSON ``meterline.invoice/4``, CSV, HTML).

Pure core: ``periods`` (cadences, anchor days, timezones), ``customers`` (subscriptions),
``plan`` (due periods, revisions, adjustments), ``invoice``, ``documents``,
``lifecycle``.  I/O at the edges: ``run`` (ClickHouse reads and writes, the crash-safe
sequence), ``publish`` (Kafka transactions).  ``python -m invoicing`` is the CLI; the
design and the document schema are in ``docs/invoicing.md``.
"""
