"""The docs print tables that live in code; these tests keep them the same."""
import os

from vhsm.commands.catalog import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_device_doc_prints_the_current_command_table():
    with open(os.path.join(ROOT, "docs", "device.md")) as f:
        text = f.read()
    start = text.index("-->", text.index("<!-- command-table")) + 3
    end = text.index("<!-- end command-table -->")
    assert text[start:end].strip() == markdown_table().strip()


def test_admin_doc_lists_every_shell_command():
    from vhsm.cli.commands import COMMANDS
    with open(os.path.join(ROOT, "docs", "admin.md")) as f:
        text = f.read()
    for c in COMMANDS:
        assert f"| `{c.name}` |" in text, c.name
