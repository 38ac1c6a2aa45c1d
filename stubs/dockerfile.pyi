# Stubs for `dockerfile` (asottile/dockerfile: BuildKit's Dockerfile parser as a C extension); only what
# tests/test_deploy.py uses.
from typing import NamedTuple

class Heredoc(NamedTuple):
    name: str
    content: str

class Command(NamedTuple):
    cmd: str  # instruction as written, e.g. "FROM" or "from"
    sub_cmd: str | None  # ONBUILD's instruction
    json: bool  # exec form (["a", "b"])
    original: str  # the source text of the instruction
    start_line: int
    end_line: int
    flags: tuple[str, ...]  # e.g. ("--from=build",)
    value: tuple[str, ...]  # arguments
    heredocs: tuple[Heredoc, ...]

class GoIOError(OSError): ...
class GoParseError(ValueError): ...

def all_cmds() -> tuple[str, ...]: ...

def parse_file(filename: str) -> tuple[Command, ...]: ...
def parse_string(s: str) -> tuple[Command, ...]: ...
