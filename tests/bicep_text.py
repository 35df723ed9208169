"""main.bicep read as text (the Bicep CLI downloads a binary of its own and is not installable here):
its parameters (type, default, length bounds, allowed values) and its resources (type, the
expression of their name, the array a resource loop runs over). tests/infra/conftest.py serves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BICEP = ROOT / "infra" / "azure" / "main.bicep"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    min_length: int | None
    max_length: int | None
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str  # without the API version
    name: str  # the Bicep expression of its name
    loop: str | None  # `endpoint in privateEndpoints` -> ("endpoint", "privateEndpoints")
    loop_array: str | None


@dataclass(frozen=True)
class Bicep:
    text: str
    params: dict[str, Param]
    variables: dict[str, str]  # one-line `var x = <expr>` only
    resources: dict[str, Resource]

    def array_of_objects(self, variable: str) -> list[dict[str, str]]:
        """A `var x = [ { key: 'literal' ... } ... ]`: its items' literal entries."""
        start = re.search(rf"^var {variable} = \[\n(.*?)^\]", self.text, re.MULTILINE | re.DOTALL)
        assert start, f"main.bicep has no array variable {variable}"
        items = re.findall(r"^  \{\n(.*?)^  \}", start.group(1), re.MULTILINE | re.DOTALL)
        return [dict(re.findall(r"^\s+(\w+): '([^'$]*)'\s*$", item, re.MULTILINE)) for item in items]


def _decorators(text: str, end: int) -> str:
    """The decorator lines right above a `param` line."""
    lines = text[:end].splitlines()
    found = []
    for line in reversed(lines):
        if line.startswith("@") or line.startswith("  '") or line == "])":
            found.append(line)
        else:
            break
    return "\n".join(reversed(found))


def parse(text: str) -> Bicep:
    params = {}
    for match in re.finditer(r"^param (\w+) (\w+)(?: = (.+))?$", text, re.MULTILINE):
        decorators = _decorators(text, match.start())
        low = re.search(r"@minLength\((\d+)\)", decorators)
        high = re.search(r"@maxLength\((\d+)\)", decorators)
        allowed = re.search(r"@allowed\(\[(.*?)\]\)", decorators, re.DOTALL)
        params[match.group(1)] = Param(
            match.group(1),
            match.group(2),
            match.group(3),
            int(low.group(1)) if low else None,
            int(high.group(1)) if high else None,
            tuple(re.findall(r"'([^']*)'", allowed.group(1))) if allowed else (),
        )
    variables = dict(re.findall(r"^var (\w+) = (.+)$", text, re.MULTILINE))
    resources = {}
    loop = r"(?:\[for (?:\(?(\w+)(?:, \w+)?\)?) in (\w+): )?"
    header = re.compile(rf"^resource (\w+) '([^'@]+)@[^']+' = {loop}(?:if \(.*?\) )?\{{$", re.MULTILINE)
    for match in header.finditer(text):
        body = text[match.end() :]
        name = re.search(r"^  name: (.+)$", body, re.MULTILINE)
        assert name, f"resource {match.group(1)} has no name"
        resources[match.group(1)] = Resource(
            match.group(1), match.group(2), name.group(1), match.group(3), match.group(4)
        )
    declared = len(re.findall(r"^resource ", text, re.MULTILINE))
    assert len(resources) == declared, "a resource header this reader does not understand"
    return Bicep(text, params, variables, resources)
