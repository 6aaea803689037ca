"""The lab's shell splits a command into the same words as shlex, the reference it is
checked against: its fast path for plain and single-quoted words must never read a command
another way (a word read wrongly would run something else in the lab than on a node)."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollgate.core.lab.commands import _tokens
from rollgate.core.transports.remote_job import wrapper_command

words_of = _tokens.__wrapped__  # not the cache: each example is split afresh


def reference(command: str) -> tuple[str, ...]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return tuple(lexer)


def same_reading(command: str) -> None:
    try:
        expected: tuple[str, ...] | type[ValueError] = reference(command)
    except ValueError:
        expected = ValueError
    try:
        got: tuple[str, ...] | type[ValueError] = words_of(command)
    except ValueError:
        got = ValueError
    assert got == expected, command


@pytest.mark.parametrize("become", [False, True])
@pytest.mark.parametrize("password", [False, True])
@pytest.mark.parametrize(
    "verb, args",
    [("start", ("echo 'it''s' \"$HOME\"; ls | wc -l && true",)), ("attach", (0, 12)),
     ("status", ()), ("kill", (5,)), ("clean", ()), ("check", ())],
)  # fmt: skip
def test_every_wrapper_command_reads_as_shlex_reads_it(
    verb: str, args: tuple[str | int, ...], become: bool, password: bool
) -> None:
    command = wrapper_command(verb, "/var/tmp/rollgate-jobs-%u/run/job-1", *args,
                              become=become, password=password)  # fmt: skip
    same_reading(command)
    assert len(words_of(command)) > 5  # the wrapper's words, not one long one


SPECIAL = " \t\n'\"\\#;&|$><()`*~="
pieces = st.one_of(
    st.text(alphabet=st.sampled_from(SPECIAL + "abc-./%:,@+_é1"), max_size=12),
    st.text(max_size=8).map(shlex.quote),
    st.sampled_from(["'", '"', "\\", "#", "&&", "||", ";", " ", "\n", "'\"'\"'", "''"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=12))
def test_any_command_reads_as_shlex_reads_it(parts: list[str]) -> None:
    same_reading("".join(parts))
    same_reading(" ".join(parts))
