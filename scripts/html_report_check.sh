#!/usr/bin/env bash
# Open the `spillway bench --html` report in headless Chromium and check that its charts render.
#
# 1. A small, fast self-contained bench run (4 policies, 150 requests, a few seconds) writes
#    the report.
# 2. Layout: a copy of the page with a probe script appended is loaded with --dump-dom; the
#    probe measures, in Chromium's own layout, every <svg> (rendered width and height), the
#    stacked-area paths of the served-per-region charts and the TTFT CDF polylines (their
#    rendered length), and writes the figures into the DOM. The check wants one CDF chart plus
#    one served-per-region chart per policy, all laid out at a non-zero size, with non-empty
#    area paths and CDF lines. (The report itself has no script: only the copy is probed.)
# 3. Pixels: the unmodified page is screenshot (--screenshot) and the PNG decoded: the three
#    us regions' area colours (85 % opacity over white) must cover a good number of pixels.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/debug/spillway, or target/debug/spillway)
#   CHROMIUM       the browser (default: chromium)
#   PYTHON         the interpreter (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SPILLWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/spillway}
chromium=${CHROMIUM:-chromium}
python=${PYTHON:-python3}
[ -x "$bin" ] || { echo "html_report_check: no spillway binary at $bin (cargo build -p spillway)"; exit 1; }
command -v "$chromium" >/dev/null || { echo "html_report_check: $chromium not found (apt-get install chromium)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report="$tmp/report.html"

echo "== html_report_check: a small self-contained bench run"
"$bin" bench --self-contained --poisson 20 --limit 150 --time-scale 10 --html "$report" >"$tmp/bench.out" 2>"$tmp/bench.err" \
  || { cat "$tmp/bench.out" "$tmp/bench.err"; echo "html_report_check: the bench run failed"; exit 1; }

run_chromium() {
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --hide-scrollbars --user-data-dir="$tmp/profile" "$@" 2>>"$tmp/chromium.log"
}

# The probe: figures of the layout Chromium computed, written into a <pre id="probe">.
probed="$tmp/probed.html"
sed 's#</body>#<script>\
(function () {\
  var out = {svgs: [], areas: 0, area_px: 0, lines: 0, line_px: 0};\
  document.querySelectorAll("svg").forEach(function (s) {\
    var r = s.getBoundingClientRect();\
    out.svgs.push([Math.round(r.width), Math.round(r.height)]);\
  });\
  document.querySelectorAll("svg path[fill-opacity]").forEach(function (p) {\
    var b = p.getBBox(); out.areas += 1; out.area_px += b.width * b.height;\
  });\
  document.querySelectorAll("svg polyline").forEach(function (p) {\
    out.lines += 1; out.line_px += p.getTotalLength();\
  });\
  var pre = document.createElement("pre"); pre.id = "probe";\
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);\
})();\
</script></body>#' "$report" >"$probed"

echo "== html_report_check: layout in headless Chromium (--dump-dom)"
run_chromium --virtual-time-budget=5000 --dump-dom "file://$probed" >"$tmp/dom.html" \
  || { cat "$tmp/chromium.log"; echo "html_report_check: chromium --dump-dom failed"; exit 1; }

echo "== html_report_check: pixels (--screenshot)"
run_chromium --window-size=1100,4000 --screenshot="$tmp/shot.png" "file://$report" >/dev/null \
  || { cat "$tmp/chromium.log"; echo "html_report_check: chromium --screenshot failed"; exit 1; }

"$python" - "$report" "$tmp/dom.html" "$tmp/shot.png" <<'EOF'
import json, re, struct, sys, zlib

report, dom_file, png_file = sys.argv[1:4]
policies = ["in-region", "round-robin", "least-loaded", "spillway"]
page = open(report, encoding="utf-8").read()
dom = open(dom_file, encoding="utf-8").read()
fail = []

m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
if not m:
    sys.exit("html_report_check: the probe did not run (no #probe in Chromium's DOM)")
probe = json.loads(m.group(1).replace("&quot;", '"'))
svgs = probe["svgs"]
print(f"  layout: {len(svgs)} svg charts, sizes {svgs}; {probe['areas']} area paths covering "
      f"{probe['area_px']:.0f} px^2; {probe['lines']} polylines, {probe['line_px']:.0f} px long")
if len(svgs) != 1 + len(policies):
    fail.append(f"expected {1 + len(policies)} svg charts (TTFT CDF + one per policy), got {len(svgs)}")
if any(w < 100 or h < 100 for w, h in svgs):
    fail.append(f"an svg chart is laid out smaller than 100x100: {svgs}")
if probe["areas"] < len(policies) or probe["area_px"] <= 0:
    fail.append("the served-per-region charts have no area paths with a rendered size")
# One CDF line per policy plus the dashed offered line of each area chart.
if probe["lines"] < 2 * len(policies) or probe["line_px"] <= 0:
    fail.append("the TTFT CDFs / offered lines have no rendered length")
for p in policies:
    if f"<h3>{p}</h3>" not in dom:
        fail.append(f"no chart heading for {p} in Chromium's DOM")

def png_pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("html_report_check: the screenshot is not a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                sys.exit(f"html_report_check: unexpected PNG format (depth {depth}, colour type {ctype})")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, rows, i = bytearray(stride), [], 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows

w, h, bpp, rows = png_pixels(png_file)
def blend(hexc, alpha=0.85):
    rgb = [int(hexc[k:k + 2], 16) for k in (1, 3, 5)]
    return [round(alpha * v + (1 - alpha) * 255) for v in rgb]
targets = {name: blend(c) for name, c in
           [("us-east-1", "#4e79a7"), ("us-east-2", "#f28e2b"), ("us-west-2", "#59a14f")]}
counts = {name: 0 for name in targets}
white = 0
for row in rows:
    for x in range(0, w * bpp, bpp):
        px = row[x:x + 3]
        if px[0] > 245 and px[1] > 245 and px[2] > 245:
            white += 1
            continue
        for name, t in targets.items():
            if abs(px[0] - t[0]) <= 10 and abs(px[1] - t[1]) <= 10 and abs(px[2] - t[2]) <= 10:
                counts[name] += 1
print(f"  screenshot: {w}x{h}, {100 * (1 - white / (w * h)):.1f}% non-white; area-colour pixels {counts}")
for name, n in counts.items():
    if n < 500:
        fail.append(f"the screenshot shows {n} pixels of {name}'s area colour (want >= 500)")
if fail:
    print("html_report_check: FAILED\n  " + "\n  ".join(fail))
    sys.exit(1)
print("html_report_check: the report renders: charts laid out and drawn")
EOF
