"""The README's commands, as ``tests/test_readme.py`` and ``tests/test_multinode.py`` run them."""

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    """The commands of the README's ``bash`` blocks, continuation lines joined, comments removed."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
            if command:
                commands.append(command)
    return commands
