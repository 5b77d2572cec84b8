#!/usr/bin/env python3
"""Check agentry's JSON Schemas and their examples.

Checks, in order:
  1. every schema file under schemas/ (examples excluded) is JSON, declares draft
     2020-12, has `$id` == https://agentry.dev/schemas/<path>, and is a valid schema;
  2. every `$ref` in every schema resolves through a registry holding all schemas by `$id`,
     and each `$anchor` resolves (the `dataschema` URI `<$id>#<anchor>` of events);
  3. every example validates, or fails as its `$comment` says (`*.invalid.json`):
       schemas/examples/events/<type>.<name>.json     against schemas/events/<type>.json
       schemas/examples/tasks/*.json                  against io.agentry.task.requested, and
                                                      `input` against
                                                      schemas/capabilities/<capability>.input.json
       schemas/examples/workflows/*.{json,yaml,yml}   against schemas/workflow.schema.json
     A task.completed example naming a capability also has its `output` checked against
     schemas/capabilities/<capability>.output.json when that file exists;
  4. every event schema has at least one valid example.

Invalid examples carry a top-level "$comment": "expect: <text>". The comment is removed
before validation; <text> must occur in at least one error message once every quote
character (' and ") is deleted from both, so one comment works for python-jsonschema
('x' is a required property) and the Rust jsonschema crate ("x" is a required property).
Formats (date-time, ...) are asserted.

Usage: scripts/validate_schemas.py [--root REPO] [--verbose]
Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import urljoin

try:
    import jsonschema
    import referencing
    import referencing.exceptions
    import yaml
    from referencing.jsonschema import DRAFT202012
except ImportError as err:  # pragma: no cover - environment problem
    sys.exit(f"validate_schemas: missing Python package ({err}); "
             "install with: pip install jsonschema pyyaml")

DRAFT_URI = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://agentry.dev/schemas/"
TASK_REQUESTED = "io.agentry.task.requested"
TASK_COMPLETED = "io.agentry.task.completed"
EXPECT_PREFIX = "expect:"
# Keywords whose values are data, not subschemas: never look for `$ref` inside them.
DATA_KEYWORDS = {"enum", "const", "examples", "default"}
Validator = jsonschema.Draft202012Validator


# ----------------------------------------------------------------------------- loading


class LoadError(Exception):
    """A file that cannot be read as a JSON/YAML document."""


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise LoadError(f"duplicate key {key!r}")
        out[key] = value
    return out


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader closer to YAML 1.2 (what serde_yaml reads): only true/false are booleans
    and timestamps stay strings, so `on: yes` or `date: 2025-01-01` mean the same in Rust
    and here."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_document(path: pathlib.Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LoadError(f"cannot read: {err}") from err
    try:
        if path.suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - safe subclass
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise LoadError(f"not valid {path.suffix[1:].upper()}: {err}") from err


# ----------------------------------------------------------------------------- report


@dataclass
class Report:
    root: pathlib.Path
    verbose: bool = False
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def rel(self, path: pathlib.Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def fail(self, path: pathlib.Path | str, message: str) -> None:
        where = self.rel(path) if isinstance(path, pathlib.Path) else path
        self.failures.append(f"{where}: {message}")

    def ok(self, kind: str, path: pathlib.Path, note: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.verbose:
            print(f"ok   {self.rel(path)}{'  (' + note + ')' if note else ''}")


# ----------------------------------------------------------------------------- schemas


@dataclass
class Schemas:
    by_path: dict[pathlib.Path, dict[str, Any]]
    by_id: dict[str, dict[str, Any]]
    registry: referencing.Registry

    def validator(self, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
        return Validator(schema, registry=self.registry, format_checker=Validator.FORMAT_CHECKER)


def schema_files(schemas_dir: pathlib.Path) -> list[pathlib.Path]:
    examples = schemas_dir / "examples"
    return sorted(p for p in schemas_dir.rglob("*.json")
                  if examples not in p.parents and p.is_file())


def load_schemas(report: Report, schemas_dir: pathlib.Path) -> Schemas:
    by_path: dict[pathlib.Path, dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for path in schema_files(schemas_dir):
        try:
            schema = load_document(path)
        except LoadError as err:
            report.fail(path, str(err))
            continue
        if not isinstance(schema, dict):
            report.fail(path, "a schema file must hold a JSON object")
            continue
        if schema.get("$schema") != DRAFT_URI:
            report.fail(path, f"$schema must be {DRAFT_URI!r}, found {schema.get('$schema')!r}")
            continue
        expected_id = BASE_URI + path.relative_to(schemas_dir).as_posix()
        if schema.get("$id") != expected_id:
            report.fail(path, f"$id must be {expected_id!r}, found {schema.get('$id')!r}")
            continue
        try:
            Validator.check_schema(schema)
        except jsonschema.SchemaError as err:
            report.fail(path, f"not a valid 2020-12 schema: {err.message} "
                              f"(at /{'/'.join(map(str, err.absolute_path))})")
            continue
        by_path[path] = schema
        by_id[expected_id] = schema
    resources = [(uri, DRAFT202012.create_resource(schema)) for uri, schema in by_id.items()]
    registry = referencing.Registry().with_resources(resources).crawl()
    return Schemas(by_path=by_path, by_id=by_id, registry=registry)


def iter_refs(node: Any, base: str) -> Iterator[tuple[str, str]]:
    """Yield (base URI, reference) for every `$ref`/`$dynamicRef` in a schema tree,
    following nested `$id`s so relative references resolve against the right base."""
    if isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            base = urljoin(base, node["$id"])
        for keyword in ("$ref", "$dynamicRef"):
            if isinstance(node.get(keyword), str):
                yield base, node[keyword]
        for key, value in node.items():
            if key not in DATA_KEYWORDS:
                yield from iter_refs(value, base)
    elif isinstance(node, list):
        for item in node:
            yield from iter_refs(item, base)


def iter_anchors(node: Any, base: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            base = urljoin(base, node["$id"])
        if isinstance(node.get("$anchor"), str):
            yield base, node["$anchor"]
        for key, value in node.items():
            if key not in DATA_KEYWORDS:
                yield from iter_anchors(value, base)
    elif isinstance(node, list):
        for item in node:
            yield from iter_anchors(item, base)


def check_references(report: Report, schemas: Schemas) -> None:
    for path, schema in schemas.by_path.items():
        root_id = schema["$id"]
        broken = 0
        refs = list(iter_refs(schema, root_id))
        for base, ref in refs:
            try:
                schemas.registry.resolver(base_uri=base).lookup(ref)
            except referencing.exceptions.Unresolvable as err:
                broken += 1
                report.fail(path, f"$ref {ref!r} does not resolve ({type(err).__name__})")
        for base, anchor in iter_anchors(schema, root_id):
            uri = f"{base}#{anchor}"
            try:
                schemas.registry.resolver().lookup(uri)
            except referencing.exceptions.Unresolvable as err:
                broken += 1
                report.fail(path, f"anchor URI {uri!r} does not resolve ({type(err).__name__})")
        if not broken:
            report.ok("schemas", path, f"{len(refs)} $ref")


# ----------------------------------------------------------------------------- examples


def normalise(text: str) -> str:
    return text.replace("'", "").replace('"', "")


def error_messages(validator: jsonschema.protocols.Validator, instance: Any,
                   label: str = "") -> list[str]:
    out = []
    try:
        for err in validator.iter_errors(instance):
            where = "/" + "/".join(map(str, err.absolute_path))
            out.append(f"{label}{where}: {err.message}")
    except referencing.exceptions.Unresolvable as err:
        # the broken $ref itself is reported by check_references; make the example fail too
        out.append(f"{label}: cannot validate, unresolvable reference {err.ref!r}")
    return out


def check_example(report: Report, kind: str, path: pathlib.Path, document: Any,
                  validate: Callable[[Any], list[str]]) -> None:
    """validate(instance) -> list of error messages."""
    invalid = path.name.split(".")[-2] == "invalid"
    if not isinstance(document, dict):
        report.fail(path, "an example must be a JSON object")
        return
    if invalid:
        comment = document.get("$comment")
        if not isinstance(comment, str) or not comment.startswith(EXPECT_PREFIX):
            report.fail(path, f'an invalid example needs a top-level "$comment": '
                              f'"{EXPECT_PREFIX} <error text>"')
            return
        expected = comment[len(EXPECT_PREFIX):].strip()
        if not expected:
            report.fail(path, "empty expectation in $comment")
            return
        instance = {k: v for k, v in document.items() if k != "$comment"}
        messages = validate(instance)
        if not messages:
            report.fail(path, f"expected a failure ({expected!r}) but it is valid")
            return
        if not any(normalise(expected) in normalise(m) for m in messages):
            report.fail(path, f"expected an error containing {expected!r}; got: "
                              + " | ".join(messages))
            return
        report.ok(f"{kind} (invalid)", path, f"fails: {expected}")
    else:
        messages = validate(document)
        if messages:
            report.fail(path, "should be valid: " + " | ".join(messages))
            return
        report.ok(kind, path)


def example_files(directory: pathlib.Path, suffixes: tuple[str, ...]) -> list[pathlib.Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in suffixes)


def capability_schema(schemas: Schemas, capability: Any, direction: str) -> dict | None:
    if not isinstance(capability, str):
        return None
    return schemas.by_id.get(f"{BASE_URI}capabilities/{capability}.{direction}.json")


def validate_with_capability(schemas: Schemas, type_: str, event_schema: dict,
                             instance: Any) -> list[str]:
    messages = error_messages(schemas.validator(event_schema), instance)
    if not isinstance(instance, dict):
        return messages
    if type_ == TASK_REQUESTED and "input" in instance:
        cap = capability_schema(schemas, instance.get("capability"), "input")
        if cap is not None:
            messages += error_messages(schemas.validator(cap), instance["input"], "input")
    if type_ == TASK_COMPLETED and "output" in instance:
        cap = capability_schema(schemas, instance.get("capability"), "output")
        if cap is not None:
            messages += error_messages(schemas.validator(cap), instance["output"], "output")
    return messages


def check_event_examples(report: Report, schemas: Schemas, schemas_dir: pathlib.Path) -> None:
    events = {p.name[:-len(".json")]: s for p, s in schemas.by_path.items()
              if p.parent == schemas_dir / "events"}
    covered: set[str] = set()
    directory = schemas_dir / "examples" / "events"
    for path in example_files(directory, (".json",)):
        # longest schema type that prefixes the file name: <type>.<name>[.invalid].json
        matches = [t for t in events if path.name.startswith(t + ".")]
        if not matches:
            report.fail(path, "file name does not start with a known event type")
            continue
        type_ = max(matches, key=len)
        if path.name == f"{type_}.json":
            report.fail(path, "needs a name: <type>.<name>.json")
            continue
        try:
            document = load_document(path)
        except LoadError as err:
            report.fail(path, str(err))
            continue
        before = len(report.failures)
        check_example(report, "event examples", path, document,
                      lambda inst, t=type_: validate_with_capability(schemas, t, events[t], inst))
        if len(report.failures) == before and not path.name.endswith(".invalid.json"):
            covered.add(type_)
    for type_ in sorted(set(events) - covered):
        report.fail(schemas_dir / "events" / f"{type_}.json",
                    f"no valid example in {report.rel(directory)}")


def check_task_examples(report: Report, schemas: Schemas, schemas_dir: pathlib.Path) -> None:
    task_schema = schemas.by_id.get(f"{BASE_URI}events/{TASK_REQUESTED}.json")
    paths = example_files(schemas_dir / "examples" / "tasks", (".json",))
    if paths and task_schema is None:
        report.fail(schemas_dir / "events" / f"{TASK_REQUESTED}.json", "missing")
        return
    for path in paths:
        try:
            document = load_document(path)
        except LoadError as err:
            report.fail(path, str(err))
            continue
        check_example(report, "task examples", path, document,
                      lambda inst: validate_with_capability(schemas, TASK_REQUESTED,
                                                            task_schema, inst))


SEMANTIC_EXPECTATION = re.compile(r"^\[[a-z_]+\] ")


def is_semantic_expectation(document: Any) -> bool:
    """`$comment: "expect: [<kind>] <path>: <text>"` (see schemas/README.md)."""
    if not isinstance(document, dict) or not isinstance(document.get("$comment"), str):
        return False
    comment = document["$comment"]
    return (comment.startswith(EXPECT_PREFIX)
            and SEMANTIC_EXPECTATION.match(comment[len(EXPECT_PREFIX):].strip()) is not None)


def check_workflow_examples(report: Report, schemas: Schemas,
                            schemas_dir: pathlib.Path) -> None:
    paths = example_files(schemas_dir / "examples" / "workflows", (".json", ".yaml", ".yml"))
    schema = schemas.by_id.get(f"{BASE_URI}workflow.schema.json")
    if not paths:
        return
    if schema is None:
        report.fail(schemas_dir / "workflow.schema.json",
                    f"missing (or invalid) but {len(paths)} workflow examples exist")
        return
    validator = schemas.validator(schema)
    for path in paths:
        try:
            document = load_document(path)
        except LoadError as err:
            report.fail(path, str(err))
            continue
        if is_semantic_expectation(document):
            # `expect: [<kind>] <path>: <text>` names an error of the engine's semantic
            # check (a cycle, an unknown step, CEL, ...), which no schema can see: the
            # document must pass the schema, and the Rust tests beside
            # shared/src/workflow check that the check reports exactly that error.
            instance = {k: v for k, v in document.items() if k != "$comment"}
            messages = error_messages(validator, instance)
            if messages:
                report.fail(path, "a semantic invalid example must pass the schema: "
                                  + " | ".join(messages))
            else:
                report.ok("workflow examples (invalid)", path, "semantic, checked by cargo test")
            continue
        check_example(report, "workflow examples", path, document,
                      lambda inst: error_messages(validator, inst))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent,
                        help="repository root (default: the script's parent directory's parent)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every file checked")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    schemas_dir = root / "schemas"
    report = Report(root=root, verbose=args.verbose)
    if not schemas_dir.is_dir():
        print(f"validate_schemas: no schemas directory at {schemas_dir}", file=sys.stderr)
        return 1
    if Validator.FORMAT_CHECKER.conforms("yesterday", "date-time"):
        print("validate_schemas: date-time format checking is unavailable; "
              "install rfc3339-validator", file=sys.stderr)
        return 1

    schemas = load_schemas(report, schemas_dir)
    check_references(report, schemas)
    check_event_examples(report, schemas, schemas_dir)
    check_task_examples(report, schemas, schemas_dir)
    check_workflow_examples(report, schemas, schemas_dir)

    print("validate_schemas summary:")
    for kind in ("schemas", "event examples", "event examples (invalid)", "task examples",
                 "task examples (invalid)", "workflow examples", "workflow examples (invalid)"):
        print(f"  {kind:28} {report.counts.get(kind, 0):4} ok")
    if not (schemas_dir / "examples" / "workflows").is_dir():
        print("  (no schemas/examples/workflows yet)")
    if report.failures:
        print(f"FAILED: {len(report.failures)} problem(s)")
        for failure in report.failures:
            print(f"  - {failure}")
        return 1
    print("all schemas and examples OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
