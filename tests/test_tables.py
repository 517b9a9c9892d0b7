"""evaluation.tables.markdown_table: the one markdown-table writer."""

import pytest

from anpvs_tf.evaluation.tables import markdown_table


def test_header_separator_and_rows_in_order():
    lines = markdown_table(("model", "clean %"), [("at", 99.1), ("bp", 7)])
    assert lines == ["| model | clean % |", "|---|---|", "| at | 99.1 |",
                     "| bp | 7 |"]


def test_every_row_splits_into_one_cell_per_column():
    header = ("a", "b", "c")
    rows = [("x", "", 1.5), (None, True, "y z")]
    lines = markdown_table(header, rows)
    cells = [line.strip("|").split("|") for line in lines]
    assert {len(row) for row in cells} == {3}
    assert [c.strip() for c in cells[3]] == ["None", "True", "y z"]


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="needs 2 cells"):
        markdown_table(("a", "b"), [("only one",)])
