"""The README's commands, as ``tests/test_readme.py`` and ``tests/test_multinode.py`` run them."""

import re
import shlex

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


def readme_command(picks: str, swap: dict[str, str | None]) -> list[str]:
    """The one README command that contains ``picks``, split into arguments, each one that ``swap``
    names replaced (by None: dropped). Fails when the README's command no longer has one of them."""
    (command,) = [command for command in readme_commands() if picks in command]
    argv = shlex.split(command)
    missing = set(swap) - set(argv)
    assert not missing, f"the README's command changed, update what replaces {sorted(missing)}: {command}"
    return [swap.get(arg, arg) for arg in argv if swap.get(arg, arg) is not None]
