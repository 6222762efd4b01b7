"""JSON Schema (draft 2020-12, pydantic style) compiled into what the coercer needs.

Handled: `$ref` into `$defs`/`definitions` (recursive schemas too), `allOf` (merged),
`anyOf`/`oneOf` and type lists (unions, `null` included), `enum`, `const`, `properties`,
`required`, `default`, `additionalProperties` (maps), `items`, `prefixItems`, `pattern`,
`minimum`/`maximum`, and two extension keywords: `x-alias` on a property (the name the
model uses for it; a string or a list) and `x-aliases` on an enum (`{value: alias}`; an
aliased value is then matched by its alias only, as BAML does).
"""

from __future__ import annotations

from typing import Any

from surge._errors import ConfigError
from surge._parsing._refs import lookup_ref

__all__ = ["Prop", "Schema", "TagPlan", "compile_schema"]

_NO_DEFAULT: Any = object()


class Prop:
    """One property of an object schema.

    Attributes:
        name: The property name (the key of the output).
        keys: Keys the model may use for it, preferred first (aliases, then the name).
        schema: The value's schema.
        required: Listed in `required`.
        default: The schema default, or `NO_DEFAULT`.
    """

    __slots__ = ("default", "keys", "name", "required", "schema")

    def __init__(self, name: str, keys: list[str], schema: Schema, required: bool, default: Any):
        self.name = name
        self.keys = keys
        self.schema = schema
        self.required = required
        self.default = default

    @property
    def has_default(self) -> bool:
        """Whether the schema gives a default for this property."""
        return self.default is not _NO_DEFAULT


class Schema:
    """A compiled schema node.

    Attributes:
        kind: `any`, `null`, `string`, `integer`, `number`, `boolean`, `enum`, `const`,
            `array`, `object`, `map` or `union`.
        raw: The source schema dict (after `$ref`/`allOf` resolution).
        branches: For `union`, the member schemas (nested unions flattened).
        items: For `array`, the item schema; for `map`, the value schema.
        props: For `object`, its properties.
        extra: For `object`, the schema of extra keys when they are kept, else None.
        values: For `enum`, the allowed values; for `const`, a one-item list.
        aliases: For `enum`/`const`, value index -> the names it may be written as.
    """

    __slots__ = (
        "_plan",
        "_tag",
        "aliases",
        "branches",
        "extra",
        "items",
        "kind",
        "props",
        "raw",
        "values",
    )

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.kind = "any"
        self.branches: list[Schema] = []
        self.items: Schema | None = None
        self.props: list[Prop] = []
        self.extra: Schema | None = None
        self.values: list[Any] = []
        self.aliases: list[list[str]] = []
        self._tag: tuple[str, list[Prop | None]] | bool | None = False  # not computed yet
        self._plan: TagPlan | bool | None = False  # not computed yet

    def __repr__(self) -> str:
        return f"Schema({self.kind}, {self.describe()})"

    @property
    def nullable(self) -> bool:
        """Whether `null` is an accepted value."""
        if self.kind in ("null", "any"):
            return True
        return self.kind == "union" and any(b.kind == "null" for b in self.branches)

    def non_null(self) -> Schema:
        """The schema without its `null` branch (itself when there is none, or several)."""
        if self.kind == "union":
            rest = [b for b in self.branches if b.kind != "null"]
            if len(rest) == 1:
                return rest[0]
        return self

    def tag(self) -> tuple[str, list[Prop | None]] | None:
        """For a union of objects told apart by a literal field: the field, and its `Prop`.

        Returns `(property name, [the branch's Prop for it, or None for a branch that is
        not such an object])`, or None when the union has no such field. The field is the
        one pydantic names in `discriminator.propertyName`, else the first property that
        every object branch has as a `Literal` (`const`, or an `enum` of strings). Computed
        once, on first use (a recursive schema is complete by then).
        """
        if self._tag is False:
            self._tag = _find_tag(self)
        return self._tag  # type: ignore[return-value]

    def tag_plan(self) -> TagPlan | None:
        """`tag()` laid out for the coercer (see `TagPlan`); None when there is no tag.

        Computed once, on first use.
        """
        if self._plan is False:
            tag = self.tag()
            self._plan = None if tag is None else TagPlan(tag[0], self.branches, tag[1])
        return self._plan  # type: ignore[return-value]

    def describe(self) -> str:
        """A short human name for error messages (`integer`, `Foo`, `list of Bar`)."""
        title = self.raw.get("title")
        if self.kind in ("object", "enum") and isinstance(title, str):
            return title
        if self.kind == "array":
            return f"list of {self.items.describe() if self.items else 'any'}"
        if self.kind == "union":
            return " | ".join(b.describe() for b in self.branches)
        if self.kind in ("enum", "const"):
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind == "map":
            return f"map of {self.items.describe() if self.items else 'any'}"
        return self.kind


def _literal_prop(s: Schema, name: str) -> Prop | None:
    for prop in s.props:
        if prop.name == name:
            base = prop.schema.non_null()
            if base.kind == "const" or (
                base.kind == "enum" and all(isinstance(v, str) for v in base.values)
            ):
                return prop
            return None
    return None


def _find_tag(s: Schema) -> tuple[str, list[Prop | None]] | None:
    if s.kind != "union":
        return None
    objects = [b for b in s.branches if b.kind == "object"]
    if len(objects) < 2:
        return None
    named = s.raw.get("discriminator")
    names = [named["propertyName"]] if isinstance(named, dict) and "propertyName" in named else []
    names += [p.name for p in objects[0].props]
    for name in names:
        props = [_literal_prop(b, name) if b.kind == "object" else None for b in s.branches]
        if all(props[i] is not None for i, b in enumerate(s.branches) if b.kind == "object"):
            return name, props
    return None


def compile_schema(root: dict[str, Any]) -> Schema:
    """Compile a JSON Schema dict.

    Raises:
        ConfigError: The schema is not a dict, or a `$ref` points nowhere.
    """
    if not isinstance(root, dict):
        raise ConfigError(f"a JSON Schema target must be a dict, got {type(root).__name__}")
    return _Compiler(root).compile(root)


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.memo: dict[int, Schema] = {}

    def resolve(self, raw: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        if depth > 50:
            raise ConfigError("JSON Schema $ref chain is too deep (a $ref cycle?)")
        ref = raw.get("$ref")
        if isinstance(ref, str):
            target = self._lookup(ref)
            siblings = {k: v for k, v in raw.items() if k != "$ref"}
            resolved = self.resolve(target, depth + 1)
            return {**resolved, **siblings} if siblings else resolved
        all_of = raw.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {}
            for part in all_of:
                if isinstance(part, dict):
                    merged.update(self.resolve(part, depth + 1))
            merged.update({k: v for k, v in raw.items() if k != "allOf"})
            return merged
        return raw

    def _lookup(self, ref: str) -> dict[str, Any]:
        try:
            node = lookup_ref(self.root, ref)
        except KeyError as exc:
            raise ConfigError(f"JSON Schema {exc.args[0]}") from None
        if not isinstance(node, dict):  # JSON gives dicts; another Mapping is not a schema here
            raise ConfigError(f"JSON Schema $ref {ref!r} is not a schema object")
        return node

    def compile(self, raw: Any) -> Schema:
        if raw is True or raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"not a JSON Schema: {raw!r}")
        memo_key = id(raw)
        if memo_key in self.memo:
            return self.memo[memo_key]
        resolved = self.resolve(raw)
        if resolved is not raw and id(resolved) in self.memo:
            return self.memo[id(resolved)]  # a plain `$ref` to a schema already compiled
        schema = Schema(resolved)
        self.memo[memo_key] = schema
        if resolved is not raw:
            self.memo.setdefault(id(resolved), schema)
        self._fill(schema, resolved)
        return schema

    def _fill(self, s: Schema, raw: dict[str, Any]) -> None:
        union = raw.get("anyOf") or raw.get("oneOf")
        if isinstance(union, list) and union:
            s.kind = "union"
            for branch in union:
                b = self.compile(branch)
                s.branches.extend(b.branches if b.kind == "union" else [b])
            return
        if "const" in raw:
            s.kind = "const"
            s.values = [raw["const"]]
            s.aliases = [[str(raw["const"])]]
            return
        if isinstance(raw.get("enum"), list):
            s.kind = "enum"
            s.values = list(raw["enum"])
            aliases = raw.get("x-aliases") or {}
            for value in s.values:
                alias = aliases.get(value) if isinstance(value, str) else None
                names = [alias] if isinstance(alias, str) else list(alias or [])
                s.aliases.append(names or [str(value)])
            return
        typ = raw.get("type")
        if isinstance(typ, list):
            s.kind = "union"
            rest = {k: v for k, v in raw.items() if k != "type"}
            for t in typ:
                s.branches.append(self._typed(dict(rest, type=t)))
            return
        if typ is None:
            if "properties" in raw or "additionalProperties" in raw:
                typ = "object"
            elif "items" in raw or "prefixItems" in raw:
                typ = "array"
        self._fill_typed(s, raw, typ)

    def _typed(self, raw: dict[str, Any]) -> Schema:
        s = Schema(raw)
        self._fill_typed(s, raw, raw.get("type"))
        return s

    def _fill_typed(self, s: Schema, raw: dict[str, Any], typ: Any) -> None:
        if typ in ("string", "integer", "number", "boolean", "null"):
            s.kind = typ
        elif typ == "array":
            s.kind = "array"
            items = raw.get("items")
            if isinstance(items, dict):
                s.items = self.compile(items)
            elif isinstance(raw.get("prefixItems"), list) and raw["prefixItems"]:
                s.items = self.compile({"anyOf": raw["prefixItems"]})
            else:
                s.items = Schema({})
        elif typ == "object":
            props = raw.get("properties")
            extra = raw.get("additionalProperties")
            if isinstance(props, dict) and props:
                s.kind = "object"
                required = set(raw.get("required") or ())
                for name, prop_raw in props.items():
                    keys = self._keys(name, prop_raw)
                    default = (
                        prop_raw.get("default", _NO_DEFAULT)
                        if isinstance(prop_raw, dict)
                        else _NO_DEFAULT
                    )
                    s.props.append(
                        Prop(name, keys, self.compile(prop_raw), name in required, default)
                    )
                if isinstance(extra, dict) and extra:
                    s.extra = self.compile(extra)
            else:
                s.kind = "map"
                s.items = self.compile(extra) if isinstance(extra, dict) else Schema({})
                if isinstance(raw.get("required"), list) and raw["required"]:
                    # `{"type": "object", "required": [...]}` with no properties: keep keys.
                    s.kind = "object"
                    s.extra = s.items
                    for name in raw["required"]:
                        s.props.append(Prop(name, [name], Schema({}), True, _NO_DEFAULT))
        else:
            s.kind = "any"

    @staticmethod
    def _keys(name: str, prop_raw: Any) -> list[str]:
        alias = prop_raw.get("x-alias") if isinstance(prop_raw, dict) else None
        keys = (
            [alias] if isinstance(alias, str) else [a for a in (alias or []) if isinstance(a, str)]
        )
        return [*keys, name] if name not in keys else keys


class TagPlan:
    """What the coercer needs of a union told apart by a tag (`Schema.tag_plan`).

    Attributes:
        name: The tag's property name.
        keys: The keys the tag is looked up under, when every member's are the same
            (then it is looked up once per object); None when they differ.
        members: For each branch, `(branch, its Prop for the tag or None, its values)`.
        every_value: The values of every member's tag.
    """

    __slots__ = ("every_value", "keys", "members", "name")

    def __init__(self, name: str, branches: list[Schema], props: list[Prop | None]) -> None:
        self.name = name
        self.members = [
            (branch, prop, prop.schema.non_null().values if prop is not None else [])
            for branch, prop in zip(branches, props, strict=True)
        ]
        self.every_value = [v for _, prop, values in self.members if prop for v in values]
        keys = [prop.keys for prop in props if prop is not None]
        self.keys = keys[0] if keys and all(k == keys[0] for k in keys) else None
