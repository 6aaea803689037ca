"""YAML loading that remembers the line of every key and value, and refuses duplicate keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located by file, line and key path."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SourceError(Exception):
    """One or more problems found in an input file; str() gives one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class YamlDocument:
    """A parsed YAML document with the line (1-based) where each path starts."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest parent that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_VALUES = 1_000_000  # values after expanding aliases: an alias bomb stops here
MAX_ALIASES = 10_000  # uses of an anchor
MAX_DEPTH = 64  # nesting of mappings and lists
# libyaml's parser where PyYAML was built with it (its nodes carry the same line marks); a
# document it refuses is parsed again by PyYAML's own, whose messages say more ("expected
# ',' or ']', but got ':'" where libyaml says "did not find expected ',' or ']'")
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse `text`; raise SourceError naming the line for syntax errors, duplicate keys, and
    input that would expand without bound (aliases, nesting)."""
    try:
        root = _compose(text)
    except RecursionError:
        raise SourceError(
            [Problem(file, None, "", f"nested too deeply (over {MAX_DEPTH} levels); flatten it")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SourceError(
            [Problem(file, line, "", f"not valid YAML: {reason}; fix the syntax at this line")]
        ) from None
    doc = YamlDocument(file, None)
    problems: list[Problem] = []
    constructor = yaml.SafeLoader("")

    built = [0]
    seen: set[int] = set()
    aliases = [0]

    def limit(node: yaml.Node, why: str) -> SourceError:
        return SourceError([Problem(file, node.start_mark.line + 1, "", why)])

    def build(node: yaml.Node, path: Path) -> Any:
        built[0] += 1
        if id(node) in seen and isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            aliases[0] += 1  # the same collection again: an alias
            if aliases[0] > MAX_ALIASES:
                raise limit(node, f"more than {MAX_ALIASES:,} uses of aliases; write it out")
        seen.add(id(node))
        if built[0] > MAX_VALUES:
            raise limit(
                node,
                f"more than {MAX_VALUES:,} values once aliases are expanded (an alias bomb?); "
                "write the inventory out without nested aliases",
            )
        if len(path) > MAX_DEPTH:
            raise limit(node, f"nested too deeply (over {MAX_DEPTH} levels); flatten it")
        doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    key = str(key)
                if key in result:
                    problems.append(
                        Problem(
                            file,
                            key_node.start_mark.line + 1,
                            format_path((*path, key)),
                            f"duplicate key {key!r}; a key may appear only once here, remove "
                            "or rename one of them",
                        )
                    )
                    continue
                child = (*path, key)
                doc.lines[child] = key_node.start_mark.line + 1
                result[key] = build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    if root is not None:
        try:
            doc.data = build(root, ())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise SourceError(
                [Problem(file, mark.line + 1 if mark else None, "", f"not valid YAML: {exc}")]
            ) from None
    if problems:
        raise SourceError(problems)
    return doc
