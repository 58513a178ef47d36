"""The plan as a pull-request comment (markdown)."""

from __future__ import annotations

from flagops.plan import Plan
from flagops.render.common import summary_line


def render_markdown(plan: Plan) -> str:
    """A minimal comment: the summary line (the full renderer is built on this entry point)."""
    return f"**{summary_line(plan)}**\n"
