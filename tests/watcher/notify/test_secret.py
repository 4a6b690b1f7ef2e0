"""Secret: the value shows nowhere but reveal()."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from watcher.notify.secret import Secret, scrub

VALUE = "https://hooks.example/T000/B000/abcdef"


def test_a_secret_never_shows_its_value():
    s = Secret(VALUE)
    for text in (
        repr(s),
        str(s),
        f"{s}",
        f"{s!r}",
        f"{s:>60}",
        "{0}".format(s),  # noqa: UP030, UP032 - the format() path too
        str([s]),
        str({1: s}),
    ):
        assert VALUE not in text
        assert "***" in text
    assert s.reveal() == VALUE


def test_a_dataclass_holding_a_secret_hides_it():
    @dataclass
    class Holder:
        url: Secret

    assert VALUE not in repr(Holder(Secret(VALUE)))


def test_an_exception_naming_a_secret_hides_it():
    with pytest.raises(ValueError, match=r"\*\*\*") as info:
        raise ValueError(f"cannot post to {Secret(VALUE)}")
    assert VALUE not in str(info.value)


def test_a_secret_cannot_be_pickled():
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(VALUE))


def test_secrets_compare_by_value():
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1


def test_scrub_removes_every_secret_from_text():
    text = f"error at {VALUE} with key k3y"
    assert scrub(text, [Secret(VALUE), Secret("k3y"), Secret("")]) == "error at *** with key ***"
