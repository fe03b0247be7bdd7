"""Brace patterns are counted without expanding them, exactly as braceexpand would expand them."""

from __future__ import annotations

import braceexpand
import pytest

from smile_data.shards.patterns import (
    MAX_SHARD_NAMES, PatternTooLarge, count_names, expand_braces, split_list,
)
from smile_data.shards.reader import expand_urls

PATTERNS = [
    "clips-000000.tar", "clips-{000000..000009}.tar", "{4..1}", "{2..-1}", "{07..10}",
    "{1..10..3}", "{10..1..-4}", "{1..5..0}", "{a..g..2}", "{Z..a}", "{z..A}", "{a..a}",
    "{a,b}{0..2}", "python{2.{5..7},3.{2,3}}", "index.html{,.backup}", "{x}", "{}", "a{}b",
    "{a,{b,c}}{d,e}", r"{1\{2,3}", r"\{1,2}", "x}{y", "{a,b", "{{a,b}}", "{,}", "{a..}",
    "{1..3}{{x,y},z}-{a,b,c}",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_count_is_what_braceexpand_yields(pattern):
    try:
        expected = len(list(braceexpand.braceexpand(pattern)))
    except braceexpand.UnbalancedBracesError:
        with pytest.raises(ValueError, match="unbalanced"):
            count_names(pattern)
        return
    assert count_names(pattern) == expected


def test_a_huge_range_is_counted_and_refused_before_expansion():
    pattern = "shards/clips-{000000000..099999999}.tar"
    assert count_names(pattern) == 100_000_000
    with pytest.raises(PatternTooLarge, match=r"val_shards: .* expands to 100000000 names"):
        expand_braces(pattern, "val_shards")


def test_nested_patterns_multiply_and_the_bound_is_exact(tmp_path):
    assert count_names("{a,b{0..999}}{0..999}") == 1001 * 1000
    assert len(expand_braces("{1..%d}" % MAX_SHARD_NAMES, "shards")) == MAX_SHARD_NAMES
    with pytest.raises(PatternTooLarge, match="after 1 others"):
        expand_braces("{1..%d}" % MAX_SHARD_NAMES, "shards", already=1)
    with pytest.raises(PatternTooLarge, match="shards: "):
        expand_urls(["http://host/a-{1..600000}.tar", "http://host/b-{1..600000}.tar"])


def test_braces_nested_too_deeply_are_refused():
    with pytest.raises(ValueError, match="shards: .*nested deeper"):
        expand_braces("{a," * 40 + "b" + "}" * 40, "shards")


def test_a_comma_inside_braces_belongs_to_its_pattern():
    assert split_list(" a-{0,1}.tar, b.tar,,{x,{y,z}}") == ["a-{0,1}.tar", "b.tar", "{x,{y,z}}"]
    assert split_list("") == [] and split_list("one.tar") == ["one.tar"]
