"""The source mapping: what your Salesforce org and your product database call what the product needs.

The product names every custom Salesforce object and field it reads or writes, and every table,
column and event name of the product database, by a *mapping key* (``Account.arr``,
``columns.events.occurred_at``); ``sources.salesforce_fields`` and ``sources.product_fields`` list
them with their meaning. The mapping says what each key is called where you run: the shipped
``config/sources.yaml`` holds today's names for every key (generated from those two lists:
``default_mapping_yaml``; a test keeps the file equal to it), and a file of your own, named by
the environment variable ``CUSTOMER_HEALTH_SOURCES``, overrides any of them::

    # /opt/airflow/config/sources.yaml  (CUSTOMER_HEALTH_SOURCES=/opt/airflow/config/sources.yaml)
    version: 1
    salesforce:
      objects:
        NPS_Response: null                 # this org has no NPS object: the NPS signal is absent
      fields:
        Account.arr: AnnualRevenue         # a standard field serves as ARR
        Account.health_score: CS_Health__c
    product_db:
      tables:
        events: analytics.app_events
      columns:
        events.occurred_at: event_time
      event_names:
        login: session_start
    identity:
      anchor: stripe                       # no CRM: the Stripe customers are the accounts

Only the keys you list change. The file is read when first needed in a process (never at import)
and validated whole: an unknown key, a name that cannot be an API name or a SQL identifier, a
required item mapped to ``null``, or two keys of one object mapped to the same field fail with a
``SourceMappingError`` that names the file, the key and what to write instead. Names from the
file reach SQL only as quoted identifiers after this validation; event names are bound
parameters.

``identity.anchor`` says which system's records *are* the accounts (``account_key``), the others
being mapped onto them by ``sources.crosswalk``: ``salesforce`` (the default: Salesforce Accounts,
every other system mapped onto them), ``stripe`` (a company without a CRM that bills in Stripe:
each Stripe customer is an account; product accounts join through the customer's
``metadata.product_account_id``) or ``product`` (each product account is an account; Stripe
customers join through the same metadata). With ``stripe`` or ``product`` the Salesforce and
Zendesk connections are optional and usually absent.

An environment variable rather than an Airflow Variable: the mapping must be the same for the
scheduler's DAG runs, ``python -m customer_health.preflight`` on a laptop and the tests, without a
metadata-database lookup; workers get it like any other setting (``deploy/.env``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from customer_health.sources import product_fields, salesforce_fields

SOURCES_FILE_ENV = "CUSTOMER_HEALTH_SOURCES"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "config" / "sources.yaml"
FORMAT_VERSION = 1

# Salesforce API names: letters, digits and underscores, starting with a letter (a namespace
# prefix ``ns__`` and the ``__c`` suffix included); custom objects end in ``__c``.
_SF_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_SF_CUSTOM_OBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,76}__c")
# SQL identifiers: a table may be schema-qualified (``analytics.events``).
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_SQL_TABLE = re.compile(rf"(?:{_SQL_NAME.pattern}\.)?{_SQL_NAME.pattern}")
MAX_EVENT_NAME = 255

# Which system's records are the accounts (see the module docstring and ``sources.crosswalk``).
IDENTITY_ANCHORS: tuple[str, ...] = ("salesforce", "stripe", "product")
DEFAULT_IDENTITY_ANCHOR = "salesforce"


class SourceMappingError(ValueError):
    """The source mapping file is wrong; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class SourceMapping:
    """Names of everything the product reads or writes, as the systems it runs against call them.

    Every mapping key is present; ``None`` means "this org or database has none" (only for
    optional items). ``source`` names the file(s) it was read from, for messages.
    """

    salesforce_objects: Mapping[str, str | None]
    salesforce_fields: Mapping[str, str | None]
    product_tables: Mapping[str, str | None]
    product_columns: Mapping[str, str | None]
    event_names: Mapping[str, str | None]
    source: str = str(DEFAULT_PATH)
    identity_anchor: str = DEFAULT_IDENTITY_ANCHOR

    def product_table(self, key: str) -> str | None:
        """The product database's name of table ``key`` (``events``), or None when unmapped."""
        return self.product_tables[key]

    def product_column(self, key: str) -> str | None:
        """The product database's name of column ``key`` (``events.occurred_at``), or None."""
        return self.product_columns[key]

    def event_name(self, key: str) -> str | None:
        """The product's event name for ``key`` (``login``), or None."""
        return self.event_names[key]

    @property
    def has_features(self) -> bool:
        """Whether the product database has a feature catalogue to read."""
        return self.product_tables[product_fields.FEATURES] is not None

    def changed_from_defaults(self) -> dict[str, str | None]:
        """Every key whose name is not the default, as ``section.key -> name`` (for reports)."""
        default = default_mapping()
        out: dict[str, str | None] = {}
        for section in ("salesforce_objects", "salesforce_fields", "product_tables", "product_columns", "event_names"):
            mine, theirs = getattr(self, section), getattr(default, section)
            out |= {f"{_SECTION_PATHS[section]}.{k}": v for k, v in mine.items() if v != theirs[k]}
        if self.identity_anchor != default.identity_anchor:
            out["identity.anchor"] = self.identity_anchor
        return out


_SECTION_PATHS = {
    "salesforce_objects": "salesforce.objects",
    "salesforce_fields": "salesforce.fields",
    "product_tables": "product_db.tables",
    "product_columns": "product_db.columns",
    "event_names": "product_db.event_names",
}


# ----------------------------------------------------------------------------- the defaults
def default_mapping() -> SourceMapping:
    """Today's names for every key, from ``salesforce_fields`` and ``product_fields``."""
    return SourceMapping(
        salesforce_objects={o.key: o.name for o in salesforce_fields.CUSTOM_OBJECTS},
        salesforce_fields={f.mapping_key: f.name for f in salesforce_fields.CUSTOM_FIELDS},
        product_tables={t.key: t.key for t in product_fields.PRODUCT_TABLES},
        product_columns={c.mapping_key: c.key for c in product_fields.PRODUCT_COLUMNS},
        event_names={e.key: e.key for e in product_fields.PRODUCT_EVENTS},
        source="the defaults (customer_health.sources.salesforce_fields, product_fields)",
    )


def default_mapping_yaml() -> str:
    """The text of the shipped ``config/sources.yaml``: every key with its default name."""
    lines = [
        "# The source mapping: what your systems call what the product reads and writes.",
        "#",
        "# Generated from customer_health.sources.salesforce_fields and product_fields",
        "# (mapping.default_mapping_yaml); do not edit it here. To map your own names, write a file",
        "# with only the keys that differ and point CUSTOMER_HEALTH_SOURCES at it (README:",
        "# \"Connecting your company\"). null means \"we have none\" and is allowed for optional items only.",
        f"version: {FORMAT_VERSION}",
        "salesforce:",
        "  objects:",
    ]
    for o in salesforce_fields.CUSTOM_OBJECTS:
        lines.append(f"    {o.key}: {o.name}  # {'required' if o.required else 'optional'}: {o.label}")
    lines.append("  fields:")
    for f in salesforce_fields.CUSTOM_FIELDS:
        does = {salesforce_fields.READ: "reads", salesforce_fields.WRITE: "writes",
                salesforce_fields.READ_WRITE: "reads, writes"}[f.access]
        need = "required" if f.required else f"with {salesforce_fields.object_key(f.object)}"
        lines.append(f"    {f.mapping_key}: {f.name}  # {f.setup}; {does}; {need}")
    lines += ["product_db:", "  tables:"]
    for t in product_fields.PRODUCT_TABLES:
        lines.append(f"    {t.key}: {t.key}  # {_product_need(t.required, None)}")
    lines.append("  columns:")
    for c in product_fields.PRODUCT_COLUMNS:
        lines.append(f"    {c.mapping_key}: {c.key}  # {c.holds}; {_product_need(c.required, c.group)}")
    lines.append("  event_names:")
    for e in product_fields.PRODUCT_EVENTS:
        lines.append(f"    {e.key}: {e.key}  # {_product_need(e.required, e.group)}")
    lines += [
        "identity:",
        f"  anchor: {DEFAULT_IDENTITY_ANCHOR}  # whose records are the accounts: "
        + " | ".join(IDENTITY_ANCHORS) + " (README: \"A company without a CRM\")",
    ]
    return "\n".join(lines) + "\n"


def _product_need(required: bool, group: str | None) -> str:
    if required:
        return "required"
    return f"required with tables.{group}" if group else "optional"


# ----------------------------------------------------------------------------- loading
def load_mapping(override: str | Path | None = None, *, base: str | Path = DEFAULT_PATH) -> SourceMapping:
    """The mapping of ``base`` (the shipped file), with ``override``'s keys replacing its names.

    Both files are validated; ``SourceMappingError`` names the file and key of the first problem.
    """
    base_path = Path(base)
    data = _read(base_path)
    sources = [str(base_path)]
    merged = _sections(data, base_path, complete=True)
    anchor = _identity_anchor(data, base_path) or DEFAULT_IDENTITY_ANCHOR
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise SourceMappingError(
                f"{SOURCES_FILE_ENV} names {path}, which is not a file; point it at your source mapping "
                f"(a YAML file with the keys of {DEFAULT_PATH} that differ) or unset it to use the defaults"
            )
        override_data = _read(path)
        for section, values in _sections(override_data, path, complete=False).items():
            merged[section] = {**merged[section], **values}
        anchor = _identity_anchor(override_data, path) or anchor
        sources.append(str(path))
    mapping = SourceMapping(**merged, source=" + ".join(sources), identity_anchor=anchor)
    _check_whole(mapping)
    return mapping


_cache: dict[tuple[Any, ...], SourceMapping] = {}


def active_mapping() -> SourceMapping:
    """The mapping in force: the shipped file, overridden by ``$CUSTOMER_HEALTH_SOURCES`` if set.

    Read on first use and again only when the variable or either file changes.
    """
    override = os.environ.get(SOURCES_FILE_ENV, "").strip() or None
    key = (override, _mtime(override), _mtime(DEFAULT_PATH))
    mapping = _cache.get(key)
    if mapping is None:
        mapping = load_mapping(override)
        _cache.clear()
        _cache[key] = mapping
    return mapping


def _mtime(path: str | Path | None) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns if path else None
    except OSError:
        return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (PyYAML would keep the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise SourceMappingError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice")
        seen[key] = loader.construct_object(value_node)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SourceMappingError(f"cannot read the source mapping {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except SourceMappingError as exc:
        raise SourceMappingError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SourceMappingError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceMappingError(f"{path}: expected a mapping with version, salesforce and product_db; got "
                                 f"{type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- validation
_SALESFORCE_KEYS = {"objects", "fields"}
_PRODUCT_KEYS = {"tables", "columns", "event_names"}


def _sections(data: dict[str, Any], path: Path, *, complete: bool) -> dict[str, dict[str, str | None]]:
    """The five sections of one file, each key checked; ``complete``: every key must be there."""
    unknown = set(data) - {"version", "salesforce", "product_db", "identity"}
    if unknown:
        raise SourceMappingError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected version, "
                                 "salesforce, product_db and identity")
    if data.get("version") != FORMAT_VERSION:
        raise SourceMappingError(f"{path}: version is {data.get('version')!r}; this product reads version "
                                 f"{FORMAT_VERSION} (write `version: {FORMAT_VERSION}` at the top)")
    sf = _block(data.get("salesforce"), "salesforce", _SALESFORCE_KEYS, path)
    product = _block(data.get("product_db"), "product_db", _PRODUCT_KEYS, path)
    default = default_mapping()
    out = {
        "salesforce_objects": _entries(sf.get("objects"), "salesforce.objects", default.salesforce_objects, path),
        "salesforce_fields": _entries(sf.get("fields"), "salesforce.fields", default.salesforce_fields, path),
        "product_tables": _entries(product.get("tables"), "product_db.tables", default.product_tables, path),
        "product_columns": _entries(product.get("columns"), "product_db.columns", default.product_columns, path),
        "event_names": _entries(product.get("event_names"), "product_db.event_names", default.event_names, path),
    }
    if complete:
        for section, values in out.items():
            missing = [k for k in getattr(default, section) if k not in values]
            if missing:
                raise SourceMappingError(f"{path}: {_SECTION_PATHS[section]} lacks {missing}; the shipped "
                                         "file must name every key (regenerate it: mapping.default_mapping_yaml())")
    return out


def _identity_anchor(data: dict[str, Any], path: Path) -> str | None:
    """The file's ``identity.anchor``, checked; None when the file does not say."""
    identity = _block(data.get("identity"), "identity", {"anchor"}, path)
    anchor = identity.get("anchor")
    if anchor is None:
        return None
    if not isinstance(anchor, str) or anchor.strip().lower() not in IDENTITY_ANCHORS:
        raise SourceMappingError(
            f"{path}: identity.anchor is {anchor!r}; write one of {', '.join(IDENTITY_ANCHORS)} (salesforce: the "
            "Salesforce Accounts are the accounts; stripe: the Stripe customers; product: the product accounts)"
        )
    return anchor.strip().lower()


def _block(value: Any, where: str, allowed: set[str], path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceMappingError(f"{path}: {where} must be a mapping of {sorted(allowed)}, got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        raise SourceMappingError(f"{path}: {where} has unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    return value


def _entries(value: Any, where: str, known: Mapping[str, str | None], path: Path) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceMappingError(f"{path}: {where} must map keys to names, got {value!r}")
    out: dict[str, str | None] = {}
    for key, name in value.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SourceMappingError(
                f"{path}: {where}.{key} is not something the product reads or writes{hint} "
                f"(the keys: {', '.join(known)})"
            )
        if name is not None and not isinstance(name, str):
            raise SourceMappingError(f"{path}: {where}.{key} must be a name (text) or null, got {name!r}")
        out[key] = name.strip() if isinstance(name, str) else None
    return out


def _check_whole(m: SourceMapping) -> None:
    """Rules across keys: names that can be what they name, nulls only where allowed, no doubles."""
    where = m.source
    for key, name in m.salesforce_objects.items():
        obj = salesforce_fields.OBJECTS_BY_KEY[key]
        if name is None:
            if obj.required:
                raise SourceMappingError(f"{where}: salesforce.objects.{key} is required and cannot be null")
            continue
        if not _SF_CUSTOM_OBJECT.fullmatch(name):
            raise SourceMappingError(
                f"{where}: salesforce.objects.{key} is {name!r}, which is not a custom object's API name (letters, "
                f"digits and underscores ending in __c, as Setup > Object Manager shows it, e.g. {obj.name})"
            )
    seen: dict[tuple[str, str], str] = {}
    for key, name in m.salesforce_fields.items():
        field = salesforce_fields.FIELDS_BY_KEY[key]
        obj_key = salesforce_fields.object_key(field.object)
        object_mapped = obj_key not in m.salesforce_objects or m.salesforce_objects[obj_key] is not None
        if name is None:
            if object_mapped:
                why = ("it is required" if field.required
                       else f"{obj_key} is mapped, so its fields are needed (map {obj_key} to null to go without)")
                raise SourceMappingError(f"{where}: salesforce.fields.{key} cannot be null: {why}")
            continue
        if not _SF_NAME.fullmatch(name) or "___" in name:
            raise SourceMappingError(
                f"{where}: salesforce.fields.{key} is {name!r}, which is not a field API name (letters, digits and "
                f"underscores, starting with a letter, e.g. {field.name})"
            )
        other = seen.get((field.object, name.lower()))
        if other is not None and object_mapped:
            raise SourceMappingError(
                f"{where}: salesforce.fields.{key} and {other} are both {name}; each needs a field of its own"
            )
        seen[(field.object, name.lower())] = key
    groups = {g for g in (product_fields.FEATURES, product_fields.USERS) if m.product_tables.get(g) is not None}
    for key, name in m.product_tables.items():
        table = product_fields.TABLES_BY_KEY[key]
        if name is None:
            if table.required:
                raise SourceMappingError(f"{where}: product_db.tables.{key} is required and cannot be null")
            continue
        if not _SQL_TABLE.fullmatch(name):
            raise SourceMappingError(
                f"{where}: product_db.tables.{key} is {name!r}, which is not a table name (an SQL identifier, "
                "optionally schema-qualified: events, analytics.events)"
            )
    for key, name in m.product_columns.items():
        column = product_fields.COLUMNS_BY_KEY[key]
        if m.product_tables.get(column.table) is None:
            continue  # a column of a table the database does not have
        needed = column.required or column.group in groups
        if name is None:
            if needed:
                raise SourceMappingError(f"{where}: product_db.columns.{key} cannot be null"
                                         + ("" if column.required else f" while tables.{column.group} is mapped"))
            continue
        if not _SQL_NAME.fullmatch(name):
            raise SourceMappingError(
                f"{where}: product_db.columns.{key} is {name!r}, which is not a column name (an SQL identifier: "
                "letters, digits and underscores)"
            )
    for key, name in m.event_names.items():
        event = product_fields.EVENTS_BY_KEY[key]
        needed = event.required or event.group in groups
        if name is None:
            if needed:
                raise SourceMappingError(f"{where}: product_db.event_names.{key} cannot be null"
                                         + ("" if event.required else f" while tables.{event.group} is mapped"))
            continue
        if not name or len(name) > MAX_EVENT_NAME:
            raise SourceMappingError(f"{where}: product_db.event_names.{key} must be 1 to {MAX_EVENT_NAME} "
                                     f"characters, got {name!r}")


__all__ = [
    "DEFAULT_IDENTITY_ANCHOR",
    "DEFAULT_PATH",
    "IDENTITY_ANCHORS",
    "SOURCES_FILE_ENV",
    "SourceMapping",
    "SourceMappingError",
    "active_mapping",
    "default_mapping",
    "default_mapping_yaml",
    "load_mapping",
]
