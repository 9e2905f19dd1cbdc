"""finalize's line-by-line merge: an edit made on another version of the text, in the right
place, with neighbouring changes allowed and overlapping ones refused."""

from autoresearch.textmerge import merge_edit, merge_file

BASE = "import os\nA = 0\nB = 0\nprint(A + B)\n"


def test_an_edit_next_to_a_line_changed_since_still_applies():
    with_a = BASE.replace("A = 0", "A = 1")
    frontier = with_a.replace("B = 0", "B = 1")
    # A's change taken back out of a frontier that also changed B, on the next line
    assert merge_edit(with_a, BASE, frontier) == BASE.replace("B = 0", "B = 1")
    # and made again on the baseline with B changed
    assert merge_edit(BASE, with_a, BASE.replace("B = 0", "B = 1")) == frontier


def test_a_line_removed_goes_back_where_it_was_after_lines_were_added_above():
    lines = [f"{i}\n" for i in range(1, 21)]
    before = "".join(lines)
    removed = "".join(x for x in lines if x != "15\n")
    later = "".join(lines[:2] + ["x\n", "y\n", "z\n"] + lines[2:14] + lines[15:])  # 15 gone, three lines above
    restored = merge_edit(removed, before, later).splitlines()
    assert restored[restored.index("14"):restored.index("14") + 3] == ["14", "15", "16"]
    assert restored[2:5] == ["x", "y", "z"]


def test_an_edit_of_lines_changed_since_is_refused():
    assert merge_edit(BASE, BASE.replace("A = 0", "A = 1"), BASE.replace("A = 0", "A = 2")) is None
    # an insertion whose neighbours were changed since has no place to go
    assert merge_edit(BASE, BASE.replace("A = 0\n", "A = 0\nC = 3\n"), BASE.replace("A = 0\nB = 0", "A = 5\nB = 5")) is None


def test_files_made_or_removed_by_the_edit():
    assert merge_file(None, "new\n", None) == (True, "new\n")  # made, and absent there: made
    assert merge_file("x\n", None, "x\n") == (True, None)  # removed, unchanged there: removed
    assert merge_file("x\n", None, "y\n") == (False, None)  # removed, but changed there since
