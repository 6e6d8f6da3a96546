#!/usr/bin/env bash
# The GraphQL schema's checks (graphql-inspector, pinned in frontend-schema/package-lock.json):
#  1. every operation in frontend-schema/operations/ validates against frontend-schema/schema.graphql
#     (unknown fields, wrong argument types, conflicting fields, undefined fragments, deprecated
#     fields, nesting deeper than the server's limit of 16);
#  2. schema.graphql breaks nothing released: it is diffed against the SDL of the latest `v*`
#     tag, else against frontend-schema/released/schema.graphql, and a breaking change fails;
#  3. that diff has teeth: a copy of the schema with one field removed must be reported breaking.
# Usage: scripts/check-graphql.sh
set -euo pipefail
cd "$(dirname "$0")/.."

dir=frontend-schema
if [ ! -d "$dir/node_modules/@graphql-inspector/cli" ] || \
   [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  echo "== installing graphql-inspector (npm ci in $dir)"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
fi
inspector="$PWD/$dir/node_modules/.bin/graphql-inspector"
schema="$dir/schema.graphql"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== graphql: the operations validate against $schema"
shopt -s nullglob
operations=("$dir"/operations/*.graphql)
shopt -u nullglob
if [ "${#operations[@]}" -eq 0 ]; then
  echo "error: no operations in $dir/operations/" >&2
  exit 1
fi
"$inspector" validate "$dir/operations/*.graphql" "$schema" --deprecated --maxDepth 16

# The baseline: what was last released.
baseline="$tmp/baseline.graphql"
if tag=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null) && \
   git show "$tag:$schema" > "$baseline" 2>/dev/null; then
  from="tag $tag"
else
  if [ -n "${tag:-}" ]; then
    echo "   (tag $tag has no $schema: using $dir/released/schema.graphql)"
  fi
  cp "$dir/released/schema.graphql" "$baseline"
  from="$dir/released/schema.graphql"
fi
echo "== graphql: $schema breaks nothing released (baseline: $from)"
"$inspector" diff "$baseline" "$schema"

# The diff must see a breaking change: the schema less Query's first field.
echo "== graphql: the breaking-change check fails on a removed field"
broken="$tmp/broken.graphql"
removed=$(node -e '
  const { parse, print, Kind } = require(process.argv[1] + "/node_modules/graphql");
  const fs = require("fs");
  const doc = parse(fs.readFileSync(process.argv[2], "utf8"));
  let removed;
  const definitions = doc.definitions.map((d) => {
    if (removed || d.kind !== Kind.OBJECT_TYPE_DEFINITION || d.name.value !== "Query") return d;
    removed = "Query." + d.fields[0].name.value;
    return { ...d, fields: d.fields.slice(1) };
  });
  if (!removed) throw new Error("no type Query in " + process.argv[2]);
  fs.writeFileSync(process.argv[3], print({ ...doc, definitions }));
  console.log(removed);
' "$PWD/$dir" "$schema" "$broken")
if out=$("$inspector" diff "$schema" "$broken" 2>&1); then
  echo "$out"
  echo "error: graphql-inspector diff accepted a schema without $removed: the breaking-change check has no teeth" >&2
  exit 1
fi
if ! grep -q "removed" <<<"$out"; then
  echo "$out"
  echo "error: graphql-inspector diff failed on the schema without $removed, but not by reporting its removal" >&2
  exit 1
fi
echo "   ok: removing $removed is reported as breaking"
