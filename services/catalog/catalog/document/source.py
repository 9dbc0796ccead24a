"""Document text ⇄ plain Python values: YAML (a safe YAML 1.2 subset) and JSON.

Reading is strict and never guesses a type. YAML is read with PyYAML's safe loader (libyaml when present)
under YAML 1.2 core-schema rules rather than PyYAML's YAML 1.1 ones: only ``true``/``false`` are booleans
and ``null``/``~``/nothing is null; every other scalar is a string, so numbers keep their exact text
(``amount: 0.10`` is the decimal "0.10", never a binary float) and ``2025-01-01`` or ``yes`` stay strings.
JSON numbers are likewise kept as their text. Tags are refused (but a ``!!str`` that changes nothing), and
duplicate keys too; anchors, aliases and
``<<`` merge keys are allowed, but aliases may not expand the document beyond :data:`MAX_VALUES` values
(a "billion laughs" document is a few hundred bytes). Mappings and sequences read from YAML remember where
each entry starts, so that a problem found later can name its line (:func:`locate`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meterlib.errors import FieldViolation, InvalidArgument, ResourceExhausted

MAX_DOCUMENT_BYTES: Final = 4 * 1024 * 1024
"""The largest document ApplyCatalog reads, in UTF-8 bytes."""
MAX_VALUES: Final = 1_000_000
"""The most values (mappings, sequences and scalars) a document may hold once its aliases are expanded."""
ROOT: Final = "document"
"""The field path of the document itself; every violation path starts with it."""

_STR: Final = "tag:yaml.org,2002:str"
_SEQ: Final = "tag:yaml.org,2002:seq"
_MAP: Final = "tag:yaml.org,2002:map"
_MERGE: Final = "tag:yaml.org,2002:merge"


class DocumentFormat(StrEnum):
    """How a catalog document is written."""

    YAML = "yaml"
    JSON = "json"


@dataclass(frozen=True)
class Position:
    """Where a value starts in the document text, 1-based."""

    line: int
    column: int


class SourceMapping(dict[str, Any]):
    """A mapping read from YAML, with the position of each key."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[str, Position] = {}


class SourceSequence(list[Any]):
    """A sequence read from YAML, with the position of each item."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: list[Position] = []


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader under YAML 1.2 core-schema scalars, refusing duplicate keys."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {}
    yaml_constructors: ClassVar[dict[Any, Any]] = {}

    def construct_document(self, node: Node) -> Any:
        # Every value is built at once (no lazy generators): cycles were refused beforehand.
        data = self.construct_object(node, deep=True)
        self.constructed_objects: dict[Any, Any] = {}
        self.recursive_objects: dict[Any, Any] = {}
        return data

    def construct_source_mapping(self, node: MappingNode) -> SourceMapping:
        explicit = sum(1 for key, _ in node.value if key.tag != _MERGE)
        self.flatten_mapping(node)  # `<<` entries come first; the explicit ones after them override them
        first_explicit = len(node.value) - explicit
        data = SourceMapping()
        seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be strings", key_node.start_mark
                )
            if index >= first_explicit:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            data[key] = self.construct_object(value_node, deep=True)
            data.positions[key] = _position(key_node)
        return data

    def construct_source_sequence(self, node: SequenceNode) -> SourceSequence:
        data = SourceSequence()
        for item in node.value:
            data.append(self.construct_object(item, deep=True))
            data.positions.append(_position(item))
        return data


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(_MERGE, re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_constructor("tag:yaml.org,2002:null", yaml.constructor.SafeConstructor.construct_yaml_null)
_Loader.add_constructor("tag:yaml.org,2002:bool", yaml.constructor.SafeConstructor.construct_yaml_bool)
_Loader.add_constructor(_STR, yaml.constructor.SafeConstructor.construct_yaml_str)
_Loader.add_constructor(_SEQ, _Loader.construct_source_sequence)
_Loader.add_constructor(_MAP, _Loader.construct_source_mapping)


def _check_nodes(loader: Any, root: Node) -> None:
    """Refuse explicit tags, recursive aliases and documents that aliases expand beyond MAX_VALUES.

    A tag is explicit when it differs from what the value itself resolves to; ``!!str`` on a scalar changes
    nothing here (every scalar that is not null or a boolean is a string) and passes.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def refuse(node: Node, problem: str) -> yaml.composer.ComposerError:
        return yaml.composer.ComposerError(None, None, problem, node.start_mark)

    def size(node: Node) -> int:
        if isinstance(node, ScalarNode):
            if node.tag != _STR:
                plain = node.style in (None, "")
                if node.tag != loader.resolve(ScalarNode, node.value, (plain, not plain)):
                    raise refuse(node, f"tags are not allowed (found {node.tag})")
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise refuse(node, "an alias refers to its own ancestor")
        if node.tag != (_SEQ if isinstance(node, SequenceNode) else _MAP):
            raise refuse(node, f"tags are not allowed (found {node.tag})")
        open_nodes.add(id(node))
        if isinstance(node, SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1 + sum(size(key) + size(value) for key, value in node.value)
        if total > MAX_VALUES:
            raise refuse(node, f"the document expands to more than {MAX_VALUES} values")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def _syntax_error(description: str) -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation(ROOT, description)], "the document cannot be read")


def _load_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(loader, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise _syntax_error(f"{where}{what or 'not valid YAML'}") from None
    except yaml.YAMLError as exc:
        raise _syntax_error(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate key {key!r}")
        data[key] = value
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _load_json(text: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_json_object, parse_int=str, parse_float=str, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise _syntax_error(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise _syntax_error(f"not valid JSON: {exc}") from None


def load(text: str, format: DocumentFormat) -> Any:
    """The plain values of a document: mappings, sequences, strings, booleans and None.

    Raises ResourceExhausted above :data:`MAX_DOCUMENT_BYTES` and InvalidArgument (field ``document``,
    with line and column) for text that is not YAML or JSON or breaks the rules of the module doc.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise ResourceExhausted(
            f"the document is {size} bytes; at most {MAX_DOCUMENT_BYTES} (4 MiB) are accepted",
            reason="ERROR_REASON_LIMIT_EXCEEDED",
            metadata={"limit": str(MAX_DOCUMENT_BYTES), "size": str(size)},
        )
    try:
        return _load_json(text) if format is DocumentFormat.JSON else _load_yaml(text)
    except RecursionError:
        raise _syntax_error("the document is nested too deeply") from None


_SEGMENT: Final = re.compile(r"\.([^.\[\]]+)|\[([^\]]*)\]")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def locate(tree: Any, path: str) -> Position | None:
    """Where the value at ``path`` (``document.plans[2].phases[0].key``) starts, as far as it exists in the
    YAML source; None for JSON documents or when not even its first step can be found."""
    if not path.startswith(ROOT):
        return None
    node, found = tree, None
    for match in _SEGMENT.finditer(path, len(ROOT)):
        name, bracket = match.group(1), match.group(2)
        if isinstance(node, SourceMapping):
            key = bracket if name is None else (name if name in node else _camel(name))
            if key not in node:
                break
            found, node = node.positions.get(key, found), node[key]
        elif isinstance(node, SourceSequence) and bracket is not None and bracket.isdigit():
            index = int(bracket)
            if index >= len(node):
                break
            found, node = node.positions[index], node[index]
        else:
            break
    return found


_FLOW_WIDTH: Final = 64


class _Flow(dict[str, Any]):
    """A short mapping of scalars, written on one line: ``amount: {amount: '20', currency: USD}``."""


class _FlowList(list[Any]):
    """A short list of scalars, written on one line: ``dimensions: [region, provider]``."""


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, short scalar mappings and lists on one line."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_Dumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_Dumper.add_representer(
    _FlowList, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int) and "\n" not in str(value)


def _styled(value: Any) -> Any:
    """``value`` with its short scalar-only mappings and lists marked for one-line output."""
    if isinstance(value, dict):
        items = {key: _styled(item) for key, item in value.items()}
        short = sum(len(str(k)) + len(str(v)) + 4 for k, v in items.items()) <= _FLOW_WIDTH
        return _Flow(items) if items and short and all(map(_scalar, items.values())) else items
    if isinstance(value, list):
        items_ = [_styled(item) for item in value]
        short = sum(len(str(item)) + 2 for item in items_) <= _FLOW_WIDTH
        return _FlowList(items_) if items_ and short and all(map(_scalar, items_)) else items_
    return value


def dump(data: dict[str, Any], format: DocumentFormat) -> str:
    """The text of a document's plain values: indented JSON, or block-style YAML (short scalar-only
    mappings and lists on one line), keys in the order given."""
    if format is DocumentFormat.JSON:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.dump(
        _styled(data),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=110,
    )
    return text
