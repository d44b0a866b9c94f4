"""Environment expansion in resource files: `${VAR}`, `${VAR:-default}` and `$$`, in scalar values only.

Pure: the environment is passed in, nothing is read here. The rules (docs/kubernetes.md):
- `${NAME}` is the value of NAME (an empty value stays empty); unset, it is a problem naming the
  variable, and the text stays as written.
- `${NAME:-default}` is the default when NAME is unset or empty. The default is literal text up to
  the first `}` (no nesting).
- `$$` is one literal `$`; any other `$` (not followed by `{`) is kept as it is.
- Only scalar values are expanded, after YAML parsing, never the raw text and never mapping keys: a
  value cannot inject YAML structure, and a problem points at the line of the value. A plain
  (unquoted) scalar is typed again after expansion (`port: ${PORT:-10001}` is the integer 10001); a
  quoted one stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import cast

import yaml

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
# The implicit typing of plain scalars that yaml.SafeLoader uses (int, float, bool, null, timestamp).
_resolve = cast(Callable[[type, str, tuple[bool, bool]], str], yaml.resolver.Resolver().resolve)


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with every reference replaced, and one problem per reference that cannot be."""
    out: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        nxt = text[dollar + 1 : dollar + 2]
        if nxt == "$":
            out.append("$")
            i = dollar + 2
            continue
        if nxt != "{":
            out.append("$")
            i = dollar + 1
            continue
        end = text.find("}", dollar + 2)
        if end < 0:
            problems.append(f'"${{" without a closing "}}" in {text!r} (write $$ for a literal $)')
            out.append(text[dollar:])
            break
        reference = text[dollar : end + 1]
        value, problem = _reference(text[dollar + 2 : end], env)
        if problem:
            problems.append(f"{reference}: {problem}")
        out.append(reference if value is None else value)
        i = end + 1
    return "".join(out), problems


def _reference(inner: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    name, sep, default = inner.partition(":-")
    if not _NAME.match(name):
        return None, "not a variable reference; use ${NAME} or ${NAME:-default} (or $$ for a literal $)"
    value = env.get(name)
    if sep:
        return (value if value else default), None
    if value is None:
        return None, f"environment variable {name} is not set and has no default"
    return value, None


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "?"


def _join(path: str, key: str) -> str:
    if _KEY.match(key) and "." not in key:
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def _identity(node: yaml.Node) -> str:
    """`Kind/name` of a document, as validation messages name it, or "" when it has neither."""
    if not isinstance(node, yaml.MappingNode):
        return ""
    fields = {_key_text(k): v for k, v in node.value}
    kind = fields.get("type") or fields.get("kind")
    name = fields.get("name")
    meta = fields.get("metadata")
    if name is None and isinstance(meta, yaml.MappingNode):
        name = {_key_text(k): v for k, v in meta.value}.get("name")
    kind_text = kind.value if isinstance(kind, yaml.ScalarNode) else "?"
    name_text = name.value if isinstance(name, yaml.ScalarNode) else "?"
    return f"{kind_text}/{name_text}: " if kind is not None else ""


def expand_document(node: yaml.Node, env: Mapping[str, str], file: str) -> list[tuple[int, str]]:
    """Expand every scalar value of one composed document (yaml.SafeLoader's `get_node`) in place;
    problems as (line, `FILE:LINE: KIND/NAME: FIELD.PATH: message`)."""
    problems: list[tuple[int, str]] = []
    identity = _identity(node)
    seen: set[int] = set()  # an alias shares its anchor's node: expand it once

    def walk(current: yaml.Node, path: str) -> None:
        if id(current) in seen:
            return
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                walk(value, _join(path, _key_text(key)))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, f"{path}[{index}]")
        elif isinstance(current, yaml.ScalarNode) and "$" in current.value:
            value, found = expand(current.value, env)
            line = current.start_mark.line + 1
            where = f"{file}:{line}: {identity}{path or '(document)'}: "
            problems.extend((line, where + problem) for problem in found)
            if value != current.value:
                current.value = value
                if current.style is None and current.tag == _STR_TAG:
                    current.tag = _resolve(yaml.ScalarNode, value, (True, False))

    walk(node, "")
    return problems
