"""The checkout pages (a fixture: only the flag keys it mentions matter)."""

from flags_client import is_enabled


def checkout(org):
    if is_enabled(org, "new_checkout"):
        return "new"
    if is_enabled(org, "holiday_theme_v2"):  # another key: keys only match as whole words
        return "festive"
    return "old"


PRICING_FLAG = "old_pricing"
FLAGS = ["partial_rollout", "killed_in_production", "off_for_one_org", "payments_kill_switch"]
