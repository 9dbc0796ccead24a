"""The dev runner prints backend URLs without their passwords."""

from __future__ import annotations

import pytest

from meterlib.devrun import _without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://app:s3cret@db.internal:5432/metering?sslmode=require",
            "postgresql://app:***@db.internal:5432/metering?sslmode=require",
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://postgres@127.0.0.1:55432/postgres", "postgresql://postgres@127.0.0.1:55432/postgres"),
        ("redis://127.0.0.1:56379/0", "redis://127.0.0.1:56379/0"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    assert _without_password(url) == shown
    assert "s3cret" not in _without_password(url)
