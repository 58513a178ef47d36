"""The database layer: the only place that holds SQL (schema, migrations, reads, writes, locks)."""
