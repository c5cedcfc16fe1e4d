"""The SQL benchmark's comparison of two engines' answers."""

from decimal import Decimal

from learntrack.sql_bench import analyst_queries, same_rows


def test_numbers_compare_as_numbers_and_differences_are_caught():
    assert same_rows([("a", 1, Decimal("0.5"))], [("a", 1, 0.5)])
    assert same_rows([("a", 0.1 + 0.2)], [("a", 0.3)])
    assert not same_rows([("a", 0.31)], [("a", 0.3)])
    assert not same_rows([("a", 1)], [("a", 1), ("b", 2)])
    assert not same_rows([("a", 1)], [("b", 1)])


def test_every_documented_question_has_a_named_query():
    queries = analyst_queries()
    assert len(queries) >= 8 and all(q.strip().startswith("-- ") for q in queries.values())
