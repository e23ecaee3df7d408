"""YAML 1.2 for studies, claim files and the catalog: PyYAML's safe loader, with the core schema's
plain scalars and no duplicate keys.

PyYAML reads YAML 1.1, where `1e5` is text, `010` is 8 (octal), `1:30` is 90 (base 60),
`yes`/`on` are booleans and `2025-01-01` is a date. Under YAML 1.2's core schema those are a
number, 10, and text (so a study's number field refuses them by name). Two things are kept from
outside the core schema: digits grouped by underscores as in Python (`1_000_000`, between
digits only), and merge keys (`<<: *anchor`, YAML 1.1), which only copy what the file says.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Loader", "Dumper", "load", "dump"]


class Loader(yaml.SafeLoader):
    """The safe loader (no code runs) with YAML 1.2 core-schema scalars and no duplicate keys."""


class Dumper(yaml.SafeDumper):
    """The safe dumper, quoting text that a YAML 1.1 or a 1.2 reader would take for another type
    (`yes` and `1e5` alike), so that what mcrisk writes reads back the same in either."""


Loader.yaml_implicit_resolvers = {}
Dumper.yaml_implicit_resolvers = {c: list(rs) for c, rs in yaml.SafeDumper.yaml_implicit_resolvers.items()}
_DIGITS = r"[0-9]+(?:_[0-9]+)*"  # digits, grouped by underscores as Python allows (1_000_000)
_CORE = {  # tag: (pattern, first characters): the YAML 1.2.2 core schema (spec section 10.3.2)
    "bool": (r"true|True|TRUE|false|False|FALSE", "tTfF"),
    "null": (r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    "int": (rf"[-+]?{_DIGITS}|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    "float": (
        rf"[-+]?(?:\.{_DIGITS}|{_DIGITS}(?:\.(?:{_DIGITS})?)?)(?:[eE][-+]?{_DIGITS})?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
    "merge": (r"<<", "<"),
}
for _tag, (_pattern, _first) in _CORE.items():
    for _cls in (Loader, Dumper):
        _cls.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # PyYAML's own reads a leading 0 as octal and ':' as base 60 (YAML 1.1).
    text = loader.construct_scalar(node)
    if len(text) > 40:  # (beyond any 64-bit number; Python refuses to read 4,300 digits)
        raise yaml.constructor.ConstructorError(
            None, None, f"a whole number of {len(text)} characters, beyond any a study takes", node.start_mark
        )
    return int(text[2:], 8) if text.startswith("0o") else int(text, 16) if text.startswith("0x") else int(text, 10)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: the keys it brings may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be plain text, not a list or mapping", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str) -> Any:
    """One YAML 1.2 document; raises yaml.YAMLError."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader derives from SafeLoader


def dump(data: Any, **options: Any) -> str:
    """`data` as YAML text that reads back the same under YAML 1.1 and 1.2 (options: yaml.dump's)."""
    return yaml.dump(data, Dumper=Dumper, **options)
