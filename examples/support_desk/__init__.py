"""Support desk: triage, a supervisor and three CRM-backed workers resolve customer tickets.

Modules:

* :mod:`.seed_data` - the deterministic CRM contents (customers, invoices, refunds, services).
* :mod:`.crm` - the bundled SQLite CRM and the agents' tools.
* :mod:`.agents` - typed contracts and the agents.
* :mod:`.sim_script` - the seeded simulator "LLM" every agent uses by default.
* :mod:`.workflow` - ``handle_ticket``, the durable workflow.
* :mod:`.demo` - runs every ticket in ``tickets.jsonl`` and prints KPIs.
"""
