"""Comment-keeping edits of the YAML configuration, and import, promote and rollback built on them."""
