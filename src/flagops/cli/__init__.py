"""The `flags` command line: the only package that prints or exits; one module per group of commands."""

from flagops.cli import core as core
from flagops.cli import eval as eval
from flagops.cli import history as history
from flagops.cli import import_cmd as import_cmd
from flagops.cli import kill as kill
from flagops.cli import lint as lint
from flagops.cli import promote as promote
from flagops.cli import rollback as rollback
from flagops.cli import schema as schema
from flagops.cli.app import cli, main

__all__ = ["cli", "main"]
