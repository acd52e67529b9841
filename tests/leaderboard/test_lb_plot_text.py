"""Strings from results files reach matplotlib as literal, drawable text."""
from xbench.leaderboard.plots import mpl_text


def test_dollar_is_escaped_and_control_characters_become_question_marks():
    assert mpl_text("a$b") == r"a\$b"
    assert mpl_text("x\x1by\x07z") == "x?y?z"
    assert mpl_text("two\nlines") == "two\nlines"
    assert mpl_text(3) == "3"
