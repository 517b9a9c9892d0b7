"""Markdown tables: the one writer of every table the project prints."""


def markdown_table(header, rows):
    """The lines of a GitHub markdown table.

    header: column names; rows: sequences of cells, each turned into text
    with str(); a row must have one cell per column.
    """
    header = [str(cell) for cell in header]
    lines = [_row(header), "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(header):
            raise ValueError(
                f"a table row needs {len(header)} cells (one per column "
                f"of {header}). Received: {cells}")
        lines.append(_row(cells))
    return lines


def _row(cells):
    return "| " + " | ".join(cells) + " |"
