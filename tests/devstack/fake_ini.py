"""DevStack's iniset/iniget (inc/ini-config) semantics on a real file, for the fake DevStack.

    fake_ini.py set FILE SECTION OPTION VALUE
    fake_ini.py get FILE SECTION OPTION

Like DevStack: a missing section is appended; a new option goes right under its section's
header; an existing one has its value replaced; the value is written as ``echo $value`` would
(runs of whitespace collapsed). ``get`` prints the value of the first match, stripped.
"""

from __future__ import annotations

import pathlib
import re
import sys


def _bounds(lines: list[str], section: str) -> tuple[int, int] | None:
    start = next((i for i, line in enumerate(lines) if line.startswith(f"[{section}]")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
               len(lines))
    return start, end


def _option(option: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(option)}[ \t]*=")


def iniset(path: pathlib.Path, section: str, option: str, value: str) -> None:
    value = " ".join(value.split())
    lines = path.read_text().splitlines() if path.exists() else []
    if _bounds(lines, section) is None:
        lines += ["", f"[{section}]"]
    start, end = _bounds(lines, section)
    for i in range(start + 1, end):
        if _option(option).match(lines[i]):
            lines[i] = re.sub(r"^([^=]*?[ \t]*=[ \t]*).*$", lambda m: m.group(1) + value,
                              lines[i])
            break
    else:
        lines.insert(start + 1, f"{option} = {value}")
    path.write_text("\n".join(lines) + "\n")


def iniget(path: pathlib.Path, section: str, option: str) -> str:
    if not path.exists():
        return ""
    lines = path.read_text().splitlines()
    bounds = _bounds(lines, section)
    if bounds is None:
        return ""
    for line in lines[bounds[0] + 1:bounds[1]]:
        if _option(option).match(line):
            return line.split("=", 1)[1].strip()
    return ""


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "set":
        iniset(pathlib.Path(argv[1]), argv[2], argv[3], argv[4])
        return 0
    if len(argv) == 4 and argv[0] == "get":
        print(iniget(pathlib.Path(argv[1]), argv[2], argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
