"""The configuration: `flags/` and `environments/` read, parsed with positions and validated into models."""
