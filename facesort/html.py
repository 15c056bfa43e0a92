"""A self-contained HTML page of a report: every face as a thumbnail under its class, least sure first.

Thumbnails are small JPEGs embedded in the page (it opens from disk with no server or network), or for large
reports kept in a folder beside it; the page draws cards a few hundred at a time, so a report of tens of
thousands of faces still opens quickly.
"""

from __future__ import annotations

import base64
import errno
import html
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import cv2

from facesort.crop import FaceBox, crop_face
from facesort.images import THUMBNAILS_MARK, read_image
from facesort.model import CLASSES
from facesort.report import COLUMNS

THUMB = 72
THUMB_SCALE = 1.4  # a little more than the model's crop, so a person can see the face in context


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


NUMBERS = ("face", "x", "y", "w", "h", "confidence", "p_happy", "p_male")


def check_rows(rows: list[dict]) -> None:
    """ValueError naming the first row with a face (status ok) that a page cannot show: a label that is not a
    class, or a box or probability that is not a number (a report edited by hand, or another program's)."""
    for n, r in enumerate(rows, 1):
        if r.get("status") != "ok":
            continue
        if r.get("label") not in CLASSES:
            raise ValueError(f"row {n}: label {r.get('label')!r} is not one of {', '.join(CLASSES)}")
        for key in NUMBERS:
            value = _num(r.get(key))
            if value is None or not math.isfinite(value):
                raise ValueError(f"row {n}: {key} {r.get(key)!r} is not a number")


def _thumbs(path: str, rows: list[dict]) -> list[bytes | None]:
    """JPEG thumbnails of the faces of one photo (None where it cannot be read)."""
    try:
        image = read_image(path)
    except Exception:  # noqa: BLE001 - a photo gone since the run still gets its row
        return [None] * len(rows)
    out = []
    for r in rows:
        box = FaceBox(int(float(r["x"])), int(float(r["y"])), int(float(r["w"])), int(float(r["h"])))
        thumb = crop_face(image, box, THUMB, THUMB_SCALE)
        ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 75])
        out.append(buf.tobytes() if ok else None)
    return out


EMBED_LIMIT = 2_000


def build_page(
    rows: Iterable[dict], out: str | os.PathLike, title: str = "facesort report", embed_limit: int = EMBED_LIMIT
) -> dict:
    """Write the page for report rows (dicts keyed like the CSV columns). Returns the counts shown.

    Up to embed_limit faces the thumbnails are embedded and the page is one file; above it they go to a
    folder beside the page (<page>_files/), referenced by relative path, so a page of tens of thousands
    of faces stays small enough to open at once."""
    out = Path(out)
    faces, no_face, errors = [], [], []
    by_path: dict[str, list[tuple[int, dict]]] = {}
    table = []  # every row as the report's CSV has it, for the page's corrected report
    for r in rows:
        table.append(["" if r.get(c) is None else str(r[c]) for c in COLUMNS])
        status = r.get("status")
        if status == "ok":
            by_path.setdefault(r["path"], []).append((len(table) - 1, r))
        elif status == "no_face":
            no_face.append(r["path"])
        else:
            errors.append((r["path"], r.get("error") or ""))
    base = out.parent.resolve()
    embed = sum(len(v) for v in by_path.values()) <= embed_limit
    folder = out.with_name(out.stem + "_files")
    if not embed:
        if folder.is_dir() and any(folder.iterdir()) and not (folder / THUMBNAILS_MARK).exists():
            # Thumbnails are named 0.jpg, 1.jpg, ...: never written among files facesort did not put there.
            raise FileExistsError(errno.EEXIST, f"{folder} holds files facesort did not write", str(folder))
        folder.mkdir(exist_ok=True)
        (folder / THUMBNAILS_MARK).write_text("Thumbnails of a facesort page: facesort does not classify them.\n")
    for path, numbered in by_path.items():
        face_rows = [r for _, r in numbered]
        for (i, r), thumb in zip(numbered, _thumbs(path, face_rows)):
            if thumb is None:
                src = None
            elif embed:
                src = "data:image/jpeg;base64," + base64.b64encode(thumb).decode("ascii")
            else:
                name = f"{len(faces)}.jpg"
                (folder / name).write_bytes(thumb)
                src = f"{folder.name}/{name}"
            faces.append(
                {
                    "c": CLASSES.index(r["label"]),
                    "conf": round(_num(r["confidence"]) or 0.0, 4),
                    "ph": round(_num(r["p_happy"]) or 0.0, 3),
                    "pm": round(_num(r["p_male"]) or 0.0, 3),
                    "face": int(float(r["face"])),
                    "path": _rel(path, base),
                    "t": src,
                    "i": i,
                }
            )
    counts = {c: sum(f["c"] == i for f in faces) for i, c in enumerate(CLASSES)}
    page = TEMPLATE.replace("__TITLE__", html.escape(title))
    page = page.replace("__CHART__", _chart(counts, len(no_face), len(errors)))
    page = page.replace(
        "__SUMMARY__",
        html.escape(
            f"{len(faces)} faces in {len(by_path)} photos; {len(no_face)} photos without a face; "
            f"{len(errors)} files with errors"
        ),
    )
    data = {
        "classes": list(CLASSES),
        "faces": faces,
        "noFace": [_rel(p, base) for p in no_face],
        "errors": [[_rel(p, base), e] for p, e in errors],
        "columns": list(COLUMNS),
        "rows": table,
    }
    # JSON inside <script>: escape "</" so no path can close the tag.
    page = page.replace("__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    out.write_text(page, encoding="utf-8")
    return {
        "faces": len(faces),
        "photos": len(by_path),
        "no_face": len(no_face),
        "errors": len(errors),
        "per_class": counts,
    }


def _rel(path: str, base: Path) -> str:
    try:
        return os.path.relpath(os.path.abspath(path), base)
    except ValueError:
        return path


def _chart(counts: dict, no_face: int, errors: int) -> str:
    """A small inline SVG bar chart of faces per class, plus no-face photos and errors."""
    bars = [*counts.items(), ("NoFace", no_face), ("errors", errors)]
    top = max([1, *(n for _, n in bars)])
    colours = ["#e8a33d", "#d9607a", "#4a7fc1", "#7a5bb5", "#999", "#c33"]
    parts = []
    for i, ((name, n), colour) in enumerate(zip(bars, colours)):
        width = 300 * n / top
        y = 6 + i * 24
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{html.escape(name)}</text>'
            f'<rect x="95" y="{y}" width="{width:.1f}" height="18" fill="{colour}"/>'
            f'<text x="{100 + width:.1f}" y="{y + 14}" font-size="12">{n}</text>'
        )
    return f'<svg width="460" height="{10 + 24 * len(bars)}" role="img">{"".join(parts)}</svg>'


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 8px}
.controls{margin:12px 0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.col h2{font-size:15px;margin:4px 0;position:sticky;top:0;background:#fff;padding:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:6px}
.card{width:76px;font-size:11px;text-align:center}
.card img{width:72px;height:72px;display:block;border-radius:4px;background:#eee}
.card .conf{font-weight:600}
.low{color:#b00}
.card select{width:72px;font-size:10px}
.card.fixed img{outline:3px solid #2a8;outline-offset:-3px}
.fixbar{margin:8px 0}
button.more{margin:8px 0}
details{margin-top:16px}
td{padding:2px 8px}
</style></head>
<body>
<h1>__TITLE__</h1>
<p id="summary">__SUMMARY__</p>
__CHART__
<div class="controls">
 <label>Order <select id="order"><option value="asc">least confident first</option>
 <option value="desc">most confident first</option><option value="path">by file</option></select></label>
 <label>Confidence at most <input id="maxconf" type="range" min="0.25" max="1" step="0.01" value="1">
 <span id="maxconfv">1.00</span></label>
</div>
<div class="fixbar"><button id="export">Download the report with your corrections</button>
 <span id="edits">no class changed yet</span><br><small>Change a face's class with the menu under it, download,
 then <code>facesort sort --from-report report-corrected.csv --into SORTED/</code> sorts the photos by it.</small></div>
<div class="grid" id="grid"></div>
<details id="nofaces"><summary>Photos without a face</summary><ul></ul></details>
<details id="errors"><summary>Files with errors</summary><table></table></details>
<script id="data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const PAGE = 200;
const grid = document.getElementById('grid');
const shown = D.classes.map(() => PAGE);
function esc(s){return s.replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function render(){
  const order = document.getElementById('order').value;
  const maxc = parseFloat(document.getElementById('maxconf').value);
  document.getElementById('maxconfv').textContent = maxc.toFixed(2);
  grid.innerHTML = '';
  let cards = 0;
  D.classes.forEach((name, ci) => {
    let faces = D.faces.filter(f => f.c === ci && f.conf <= maxc + 1e-9);
    faces.sort(order === 'path' ? (a, b) => a.path.localeCompare(b.path) || a.face - b.face
             : order === 'asc' ? (a, b) => a.conf - b.conf : (a, b) => b.conf - a.conf);
    const col = document.createElement('div'); col.className = 'col';
    col.innerHTML = `<h2>${name} <span class="count" data-class="${name}">${faces.length}</span></h2>`;
    const box = document.createElement('div'); box.className = 'cards';
    box.innerHTML = faces.slice(0, shown[ci]).map(f =>
      `<div class="card${f.c !== f.c0 ? ' fixed' : ''}" title="${esc(f.path)} face ${f.face}\\np_happy ${f.ph}  ` +
      `p_male ${f.pm}${f.c !== f.c0 ? '\\nthe model said ' + D.classes[f.c0] : ''}">` +
      (f.t ? `<img alt="" src="${esc(f.t)}">` : '<div>(photo gone)</div>') +
      `<span class="conf ${f.conf < 0.5 ? 'low' : ''}">${(100 * f.conf).toFixed(0)}%</span>` +
      `<select class="fix" data-k="${f.k}" aria-label="class">` +
      D.classes.map((c, j) => `<option value="${j}"${j === f.c ? ' selected' : ''}>${c}</option>`).join('') +
      '</select></div>').join('');
    cards += Math.min(faces.length, shown[ci]);
    col.appendChild(box);
    if (faces.length > shown[ci]) {
      const b = document.createElement('button'); b.className = 'more';
      b.textContent = `show ${Math.min(PAGE, faces.length - shown[ci])} more of ${faces.length - shown[ci]}`;
      b.onclick = () => { shown[ci] += PAGE; render(); };
      col.appendChild(b);
    }
    grid.appendChild(col);
  });
  document.body.dataset.cards = cards;
  const imgs = [...grid.querySelectorAll('img')];
  // Counted from load and error events, which settle within the page's loading (img.decode() does not).
  const loaded = i => i.complete ? Promise.resolve(i.naturalWidth > 0 ? 1 : 0) : new Promise(done => {
    i.onload = () => done(i.naturalWidth > 0 ? 1 : 0); i.onerror = () => done(0);
  });
  Promise.all(imgs.map(loaded)).then(r => {
    document.body.dataset.thumbsLoaded = r.reduce((a, b) => a + b, 0);
  });
}
D.faces.forEach((f, k) => { f.k = k; f.c0 = f.c; });
grid.addEventListener('change', e => {
  if (!e.target.classList.contains('fix')) return;
  D.faces[+e.target.dataset.k].c = +e.target.value;
  const n = D.faces.filter(f => f.c !== f.c0).length;
  document.getElementById('edits').textContent = n ? `${n} classes changed` : 'no class changed yet';
  render();
});
// The report as the CSV facesort wrote, each changed face with its new class (and that class's probability as
// its confidence): what `facesort sort --from-report` sorts by.
function correctedReport(){
  const col = name => D.columns.indexOf(name);
  const rows = D.rows.map(r => r.slice());
  D.faces.filter(f => f.c !== f.c0).forEach(f => {
    const cls = D.classes[f.c];
    rows[f.i][col('label')] = cls;
    rows[f.i][col('confidence')] = rows[f.i][col('p_' + cls)];
  });
  const field = v => /[",\\r\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  return [D.columns, ...rows].map(r => r.map(field).join(',') + '\\n').join('');
}
document.getElementById('export').onclick = () => {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([correctedReport()], {type: 'text/csv'}));
  a.download = 'report-corrected.csv';
  document.body.appendChild(a); a.click(); a.remove();
};
document.getElementById('order').onchange = render;
document.getElementById('maxconf').oninput = render;
document.querySelector('#nofaces ul').innerHTML = D.noFace.map(p => `<li>${esc(p)}</li>`).join('');
document.querySelector('#nofaces summary').textContent += ` (${D.noFace.length})`;
document.querySelector('#errors table').innerHTML = D.errors.map(([p, e]) =>
  `<tr><td>${esc(p)}</td><td>${esc(e)}</td></tr>`).join('');
document.querySelector('#errors summary').textContent += ` (${D.errors.length})`;
render();
</script></body></html>
"""
