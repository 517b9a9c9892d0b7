"""Every measured figure the READMEs quote comes from a bench/results file.

A figure is a number followed by a unit (%, x, s, ex/s, examples/s, points)
in the text, or a numeric cell of a markdown table. It is found when a results
file (bench/results/*.json, *.md) or the paper's table (../shared/SPEC.md,
for the "paper" columns) holds the same number at the quoted precision:
as written, rounded from more digits, or as a fraction shown in percent.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "bench" / "results").glob("*.json")),
           *sorted((ROOT / "bench" / "results").glob("*.md")),
           ROOT.parent / "shared" / "SPEC.md"]
READMES = ("README.md", "models/README.md",
           *sorted(str(p.relative_to(ROOT))
                   for p in (ROOT / "docs").glob("*.md")))

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
# A number with a unit: "97.64 %", "7.89x", "36 s", "214.1 ex/s", and
# the gaps between two of them, "10.18 worst-case points".
_UNITS = (r"%|x\b|s\b|ex/s|examples/s"
          r"|(?:worst-case |clean |PGD-40 )?points?\b")
_QUOTED = re.compile(rf"(?<![\w.\-/])({_NUMBER})\s?({_UNITS})")
_CELL = re.compile(rf"^\s*({_NUMBER})\s*(?:%|x|s)?\s*$")


def _decimals(text):
    return len(text.split(".")[1]) if "." in text else 0


def _known_numbers():
    """Every number of the sources, at every precision it may be quoted."""
    known = set()
    for path in SOURCES:
        for token in re.findall(r"-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?",
                                path.read_text()):
            value = float(token.replace(",", ""))
            for scale in (1, 100):  # fractions are quoted in percent
                for digits in range(0, 5):
                    known.add(f"{abs(value) * scale:.{digits}f}")
    return known


def _figures(text):
    """(line number, figure) of every quoted figure of a markdown text."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("|") and not set(line) <= set("|-: "):
            cells = [c for c in line.strip().strip("|").split("|")]
            found += [(number, m.group(1)) for c in cells
                      if (m := _CELL.match(c))]
        else:
            found += [(number, m.group(1)) for m in _QUOTED.finditer(line)]
    return found


def _is_setting(figure):
    """Small round numbers are settings (8 epochs, 50 %, 2 cores)."""
    value = float(figure.replace(",", ""))
    return "." not in figure and value <= 100


@pytest.mark.parametrize("readme", READMES)
def test_every_quoted_figure_is_in_a_results_file(readme):
    known = _known_numbers()
    missing = [
        f"{readme}:{line}: {figure}"
        for line, figure in _figures((ROOT / readme).read_text())
        if not _is_setting(figure)
        and f"{float(figure.replace(',', '')):.{_decimals(figure)}f}"
        not in known
    ]
    assert missing == []


def test_the_checker_finds_a_figure_no_file_holds():
    known = _known_numbers()
    text = ("ends with 12.3457 % clean, 7.6543 worst-case points above, "
            "and | 4.04x |")
    figures = [f for _, f in _figures(text)]
    assert figures == ["12.3457", "7.6543", "4.04"]
    assert "12.3457" not in known  # no results file has this figure
    assert "7.6543" not in known
    assert "4.04" in known  # compact_speed.md has this one


def test_the_readme_main_command_is_the_one_bench_quickstart_runs():
    """bench/quickstart.py measures the commands the README gives, not
    copies that could drift from them."""
    import ast

    tree = ast.parse((ROOT / "bench" / "main_command.py").read_text())
    commands = {
        target.id: ast.literal_eval(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Assign) for target in node.targets
        if getattr(target, "id", None) in ("MAIN_COMMAND", "ROBUST_COMMAND")}
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no bash block"
    first = blocks[0].strip()
    assert first == ("pip install -r requirements.txt && "
                     f"{commands['MAIN_COMMAND']}")
    # The alternative it offers is the one bench/quickstart.py runs too.
    assert f"`{commands['ROBUST_COMMAND']}`" in readme
