"""validate.py -- checks JSON documents against a schema at the edge, before
they reach a backend, with nothing but Python's standard library.

The configuration is the schema, a subset of JSON Schema:

    local schema = [[{"type": "object", "required": ["name"],
                      "properties": {"name": {"type": "string"},
                                     "age": {"type": "integer",
                                             "minimum": 0}}}]]
    local rt = hotffi.load("hotffi_python",
                           "/path/to/examples/python/validate,init," .. schema)
    local ok, res, err = rt:validate(ngx.req.get_body_data())

- a valid document: ok is true and res the document re-serialised in
  compact form (so the backend gets one canonical spelling);
- an invalid one: ok is false, res is 22 and err a JSON list of problems,
  [{"path": "$.age", "error": "-1 is less than the minimum 0"}, ...].

Keywords understood: type (one or a list of: string, integer, number,
boolean, null, object, array), enum, const, required, properties,
additionalProperties (boolean or schema), items, minItems, maxItems,
minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum.  A schema using anything else is refused at load time,
so that a typo cannot silently accept everything.

Checking is pure Python and holds the GIL, so one serving thread is as
fast as several: a second thread would only wait for the first.
"""

import json
import re

import hotffi


INVALID = 22

TYPES = {
    "string": lambda v: isinstance(v, str),
    # bool is an int in Python, not in JSON
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: (isinstance(v, (int, float))
                         and not isinstance(v, bool)),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}

KEYWORDS = {
    "type", "enum", "const", "required", "properties",
    "additionalProperties", "items", "minItems", "maxItems", "minLength",
    "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "title", "description", "$schema",
}


def compile_schema(schema, where="schema"):
    """Checks the schema once, at load, and compiles its patterns."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: a schema is an object")
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{where}: unsupported keywords {sorted(unknown)}")
    types = schema.get("type", [])
    for t in [types] if isinstance(types, str) else types:
        if t not in TYPES:
            raise ValueError(f"{where}: unknown type {t!r}")
    compiled = dict(schema)
    if "pattern" in schema:
        compiled["pattern"] = re.compile(schema["pattern"])
    if "properties" in schema:
        compiled["properties"] = {
            name: compile_schema(sub, f"{where}.properties.{name}")
            for name, sub in schema["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            compiled[key] = compile_schema(schema[key], f"{where}.{key}")
    return compiled


def check(schema, value, path, problems):
    """Appends to problems every way value breaks schema."""
    def bad(message):
        problems.append({"path": path, "error": message})

    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(TYPES[t](value) for t in types):
            bad(f"{json.dumps(value)} is not of type {' or '.join(types)}")
            return

    if "const" in schema and value != schema["const"]:
        bad(f"{json.dumps(value)} is not {json.dumps(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        bad(f"{json.dumps(value)} is not one of {json.dumps(schema['enum'])}")

    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            bad(f"{value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            bad(f"{value} is more than the maximum {schema['maximum']}")
        if ("exclusiveMinimum" in schema
                and value <= schema["exclusiveMinimum"]):
            bad(f"{value} is not more than {schema['exclusiveMinimum']}")
        if ("exclusiveMaximum" in schema
                and value >= schema["exclusiveMaximum"]):
            bad(f"{value} is not less than {schema['exclusiveMaximum']}")

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f"shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            bad(f"longer than {schema['maxLength']} characters")
        if "pattern" in schema and not schema["pattern"].search(value):
            bad(f"does not match {schema['pattern'].pattern!r}")

    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(f"fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            bad(f"more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                check(schema["items"], item, f"{path}[{i}]", problems)

    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                bad(f"{name!r} is required")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            where = f"{path}.{name}"
            if name in properties:
                check(properties[name], item, where, problems)
            elif extra is False:
                problems.append({"path": where,
                                 "error": "is not an allowed property"})
            elif isinstance(extra, dict):
                check(extra, item, where, problems)


def make_handler(schema):
    def validate(req):
        try:
            doc = json.loads(req)
        except ValueError as e:    # UnicodeDecodeError is one too
            raise hotffi.Error(INVALID, json.dumps(
                [{"path": "$", "error": f"not JSON: {e}"}]))
        problems = []
        check(schema, doc, "$", problems)
        if problems:
            raise hotffi.Error(INVALID, json.dumps(problems))
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return validate


def init(cfg, tq):
    # a bad schema raises: the load fails with the traceback
    schema = compile_schema(json.loads(cfg))
    hotffi.serve(tq, make_handler(schema))
    return 0
