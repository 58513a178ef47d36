"""Passwords in text are found and masked whole, in every spelling libpq reads."""

from __future__ import annotations

import pytest

from flagops.config.credentials import has_password, scrub


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:s3cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p#ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p?ss@h/db failed", "postgresql://u:***@h/db failed"),
        ("host=h PGPASSWORD=s3cret", "host=h PGPASSWORD=***"),
        ("host=h password=s3cret", "host=h password=***"),
    ],
)
def test_scrub_masks_the_whole_password(text: str, masked: str) -> None:
    assert scrub(text) == masked


@pytest.mark.parametrize("url", ["postgresql://u:p#ss@h/db", "postgresql://u:p?ss@h/db", "postgresql://u:p@ss@h/db"])
def test_a_password_holding_url_delimiters_is_found(url: str) -> None:
    assert has_password(url)


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql://h:5432/db", "sqlite:///x.db"])
def test_urls_without_a_password_are_not_refused(url: str) -> None:
    assert not has_password(url)
