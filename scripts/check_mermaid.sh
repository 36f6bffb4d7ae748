#!/usr/bin/env bash
# Render every ```mermaid block of docs/*.md and README.md with mermaid-cli, so a diagram GitHub
# would refuse to draw fails here first. Needs npm and a Chromium (Debian's /usr/bin/chromium:
# no browser is downloaded). mermaid-cli is installed once under $MERMAID_DIR, outside the repo.
#
#   scripts/check_mermaid.sh                       # PNGs and logs in $MERMAID_DIR/out
#   MERMAID_CLI_VERSION=10.9.1 scripts/check_mermaid.sh   # another mermaid release
set -euo pipefail
cd "$(dirname "$0")/.."

MERMAID_DIR=${MERMAID_DIR:-/tmp/sparkmart-mermaid}
MERMAID_CLI_VERSION=${MERMAID_CLI_VERSION:-11}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
install_dir="$MERMAID_DIR/cli-$MERMAID_CLI_VERSION"
out="$MERMAID_DIR/out"

command -v npm >/dev/null || { echo "check_mermaid: npm is missing (apt-get install npm)" >&2; exit 2; }
[ -x "$CHROMIUM" ] || { echo "check_mermaid: no Chromium at $CHROMIUM (set CHROMIUM=...)" >&2; exit 2; }
if [ ! -x "$install_dir/node_modules/.bin/mmdc" ]; then
  mkdir -p "$install_dir"
  echo "check_mermaid: installing @mermaid-js/mermaid-cli@$MERMAID_CLI_VERSION into $install_dir"
  (cd "$install_dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --silent \
    "@mermaid-js/mermaid-cli@$MERMAID_CLI_VERSION")
fi
mmdc="$install_dir/node_modules/.bin/mmdc"

rm -rf "$out" && mkdir -p "$out/blocks" "$out/png"
cat > "$out/puppeteer.json" <<EOF
{"executablePath": "$CHROMIUM",
 "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]}
EOF

# one file per block: <page>-<n>-L<line of the fence>.mmd
python3 - "$out/blocks" docs/*.md README.md <<'EOF'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in sys.argv[2:]:
    page = pathlib.Path(name)
    block, start, count = None, 0, 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if block is None and line.strip() == "```mermaid":
            block, start = [], number
        elif block is not None and line.strip() == "```":
            count += 1
            (out / f"{page.stem}-{count}-L{start}.mmd").write_text("\n".join(block) + "\n")
            block = None
        elif block is not None:
            block.append(line)
    if block is not None:
        sys.exit(f"{page}:{start}: mermaid block is never closed")
EOF

failed=0
for block in "$out"/blocks/*.mmd; do
  name=$(basename "$block" .mmd)
  if "$mmdc" -p "$out/puppeteer.json" -i "$block" -o "$out/png/$name.png" -b white -w 1600 -q \
      >"$out/png/$name.log" 2>&1; then
    echo "ok    $name"
  else
    echo "FAIL  $name"; sed -n '1,8p' "$out/png/$name.log"; failed=1
  fi
done
echo "check_mermaid: mermaid-cli $("$mmdc" --version); PNGs in $out/png"
exit $failed
