#!/bin/sh
# Rebuilds highlight.core.js: highlight.js's core (the ES build, made a plain function that
# returns it) followed by the grammars the widget highlights, each of which registers itself
# with the `hljs` in scope. /widget.js serves it inside the widget's function scope, so
# neither `hljs` nor anything else reaches the host page's globals. Needs npm.
set -eu
VERSION=11.11.1
LANGUAGES="bash css diff go java javascript json python rust sql typescript xml yaml"
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "@highlightjs/cdn-assets@$VERSION" >/dev/null
tar xzf "highlightjs-cdn-assets-$VERSION.tgz"
core=$(sed -E 's/export ?\{ ?([A-Za-z_$][A-Za-z0-9_$]*) as default ?\};?[[:space:]]*$/return \1;/' \
  package/es/core.min.js)
case "$core" in *"export"*) echo "the core's export was not rewritten" >&2; exit 1 ;; esac
{
  echo "/* highlight.js $VERSION (BSD-3-Clause, highlight.LICENSE): es/core.min.js and"
  echo " * languages/{$(echo "$LANGUAGES" | tr ' ' ',')}.min.js of @highlightjs/cdn-assets@$VERSION,"
  echo " * joined by build-highlight.sh */"
  echo "var hljs = (function () {"
  echo '"use strict";'
  printf '%s\n' "$core"
  echo "})();"
  for lang in $LANGUAGES; do
    cat "package/languages/$lang.min.js"
    echo
  done
} >"$here/highlight.core.js"
cp package/LICENSE "$here/highlight.LICENSE"
echo "highlight.core.js: $(wc -c <"$here/highlight.core.js") bytes"
