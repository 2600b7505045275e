"""The report's review queue as a keyboard-first editor whose corrections download as `path,reviewed_label` CSV.

Everything lives in the one HTML file (no server): the rows and their thumbnails are embedded as JSON, the
decisions are kept in the page (and in the browser's localStorage, so a reload keeps them), and the
button writes a CSV that `autolabel run --examples` and `autolabel import-review` accept. Paths in the CSV
are absolute, so it works from wherever the browser saved it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

KEYS_HELP = ("click the queue, then ↑/↓ or j/k: move · 1–9: pick that label (multi-label: add or remove it) · "
             "Enter: keep the model's label(s) and go on · 0 or Backspace: undo · ←/→: page")


@dataclass(frozen=True)
class QueueRow:
    """One image to review: its table path, absolute location, the model's decision and the labels to offer."""

    path: str
    location: str
    label: str
    confidence: float
    margin: float
    candidates: tuple[int, ...]  # indices into the label list, best first, at most 9
    thumbnail: str | None  # data URI
    reason: str = ""  # why `autolabel queue` planned it (coverage, balance, uncertain, disagree); "" otherwise


def candidates(top_labels: Sequence[str], labels: Sequence[str], other: str | None, limit: int = 9) -> tuple[int, ...]:
    """The labels a row offers under keys 1–9: its top classes, then `other`, then the remaining classes."""
    order = [*top_labels, *([other] if other else []), *labels]
    index = {name: i for i, name in enumerate(labels)}
    picked = list(dict.fromkeys(index[n] for n in order if n in index))
    return tuple(picked[:limit])


MULTI_NOTE = ("<p class='muted' id='multi-label-queue'>Multi-label: the margin is the log-odds distance of the class "
              "closest to its threshold, so the least certain rows come first; a row's label is its list of labels "
              "(1–9 add or remove a label, Enter keeps the list and moves on).</p>")


def section(rows: Sequence[QueueRow], labels: Sequence[str], total: int, report_id: str, multi: bool = False,
            planned: int = 0) -> str:
    """The review-queue section (HTML + its data + its script).

    `multi`: rows carry label lists (their `label` is a JSON array); keys and clicks toggle a label in the
    row's list, Enter keeps the list, and the CSV's reviewed_label is a JSON array (a note before the section
    says so). `planned`: how many rows at the top come from `autolabel queue` (in its order, each with its reason).
    """
    order = (f"The {planned} rows <code>autolabel queue</code> planned first, in its order (each with its reason), "
             "then the lowest margin" if planned else "Lowest margin first")
    data = {"labels": list(labels), "id": report_id, "multi": multi,
            "rows": [[r.path, r.location, r.label, round(r.confidence, 4), round(r.margin, 4), list(r.candidates),
                      r.thumbnail or "", r.reason] for r in rows]}
    # Inside <script> only `<` can end or re-mode the element ("</script", "<!--<script"): escape every one.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    options = "".join(f"<option value='{i}'>{html.escape(name)}</option>" for i, name in enumerate(labels))
    return (
        (MULTI_NOTE if multi else "")
        + f"<section id='review'><h2>Review queue ({total})</h2>"
        f"<p class='muted'>{order}; {len(rows)} of {total} here. {html.escape(KEYS_HELP)}. "
        "Click a label, or pick any label from the list. Decisions stay in this browser until you download them: "
        "<code>autolabel run … --examples corrections.csv</code> learns from them, "
        "<code>autolabel import-review corrections.csv --into LABELS</code> records them.</p>"
        "<div class='rq-bar'><button id='rq-prev'>← previous</button><span id='rq-page'></span>"
        "<button id='rq-next'>next →</button> <button id='rq-download'>download corrections "
        "(<span id='rq-count'>0</span>)</button> <select id='rq-any' aria-label='any label'>"
        f"<option value=''>any label…</option>{options}</select></div>"
        "<div id='rq' role='listbox' aria-label='review queue'></div>"
        f"<script type='application/json' id='rq-data'>{payload}</script></section>"
    )


CSS = """
.rq-row{display:flex;gap:10px;align-items:center;padding:6px;border:2px solid transparent;border-bottom:1px solid #eee}
.rq-row.focus{border-color:#48a;background:#f4f8fb}.rq-row img,.rq-row .none{width:96px;height:96px;object-fit:contain;
background:#eee;flex:none}.rq-row .meta{width:280px;overflow-wrap:anywhere;font-size:12px}.rq-row button{margin:2px}
.rq-row button.chosen{background:#2a7;color:#fff}.rq-row.decided{background:#eefaf2}.rq-bar{margin:8px 0}
"""

SCRIPT = """
(function(){
  var node = document.getElementById('rq-data'); if(!node){return;}
  var data = JSON.parse(node.textContent), rows = data.rows, labels = data.labels, multi = !!data.multi;
  var key = 'autolabel-review-' + data.id, size = 50, page = 0, focus = 0;
  var decided = {};
  try { decided = JSON.parse(localStorage.getItem(key) || '{}'); } catch(e) { decided = {}; }
  var box = document.getElementById('rq'), info = document.getElementById('rq-page');
  var pages = Math.max(1, Math.ceil(rows.length / size));
  function esc(s){return String(s).replace(/[&<>"']/g,function(c){return '&#'+c.charCodeAt(0)+';';});}
  function save(){ try { localStorage.setItem(key, JSON.stringify(decided)); } catch(e) {}
    document.getElementById('rq-count').textContent = Object.keys(decided).length; }
  function show(){
    var html = [];
    rows.slice(page*size, (page+1)*size).forEach(function(r, j){
      var i = page*size + j, mine = decided[r[1]];
      var buttons = r[5].map(function(c, k){
        var on = chosen(mine, labels[c]) ? 'chosen' : '';
        return '<button data-row="'+i+'" data-label="'+c+'" class="'+on+'">'+(k+1)+' '+esc(labels[c])+'</button>';
      }).join('');
      var img = r[6] ? '<img src="'+r[6]+'" alt="">' : '<div class="none" title="image not found">–</div>';
      html.push('<div class="rq-row'+(i===focus?' focus':'')+(mine!==undefined?' decided':'')+'" id="rq-'+i+
        '" data-row="'+i+'">'+img+'<div class="meta" title="'+esc(r[0])+'"><b>'+esc(r[2])+'</b> '+r[3].toFixed(2)+
        ' (margin '+r[4].toFixed(2)+')'+(r[7]?' · <i class="rq-why">'+esc(r[7])+'</i>':'')+
        '<br>'+esc(r[0])+(mine!==undefined?'<br>→ <b class="mine">'+shown(mine)+'</b>':'')+
        '</div><div>'+buttons+'</div></div>');
    });
    box.innerHTML = html.join('');
    info.textContent = ' page ' + (page+1) + ' of ' + pages + ' ';
    save();
  }
  function model(i){ return multi ? JSON.parse(rows[i][2]) : rows[i][2]; }
  function decide(i, label){
    if(!multi){ decided[rows[i][1]] = label; return; }
    var now = (decided[rows[i][1]] || model(i)).slice(), at = now.indexOf(label);
    if(at < 0){ now.push(label); } else { now.splice(at, 1); }
    decided[rows[i][1]] = labels.filter(function(l){ return now.indexOf(l) >= 0; });
  }
  function chosen(mine, name){ return multi ? (mine || []).indexOf(name) >= 0 : mine === name; }
  function shown(mine){ return multi ? '[' + mine.map(esc).join(', ') + ']' : esc(mine); }
  function move(to){
    focus = Math.max(0, Math.min(rows.length - 1, to)); page = Math.floor(focus / size); show();
    var el = document.getElementById('rq-' + focus);
    if(el && el.scrollIntoView){ el.scrollIntoView({block:'nearest'}); }
  }
  box.addEventListener('click', function(e){
    var t = e.target.closest('button');
    if(t){ decide(+t.dataset.row, labels[+t.dataset.label]); move(+t.dataset.row); return; }  // stays: toggle more
    var row = e.target.closest('.rq-row'); if(row){ move(+row.dataset.row); }
  });
  document.getElementById('rq-any').addEventListener('change', function(e){
    if(e.target.value !== '' && rows.length){
      decide(focus, labels[+e.target.value]); e.target.value = ''; move(multi ? focus : focus + 1);
    }
  });
  document.getElementById('rq-prev').onclick = function(){ move((page-1)*size); };
  document.getElementById('rq-next').onclick = function(){ move((page+1)*size); };
  // The keys belong to the queue only while it is in use (clicked, or reached through its link), so
  // pressing 1 or an arrow elsewhere on the page never records a decision or jumps to the queue.
  var section = document.getElementById('review'), active = location.hash === '#review';
  document.addEventListener('mousedown', function(e){ active = section.contains(e.target); });
  document.addEventListener('focusin', function(e){ active = section.contains(e.target); });
  window.addEventListener('hashchange', function(){ active = location.hash === '#review'; });
  document.addEventListener('keydown', function(e){
    if(!active || !rows.length || e.target.tagName === 'SELECT' || e.target.tagName === 'INPUT'){ return; }
    var k = e.key;
    if(k === 'ArrowDown' || k === 'j'){ move(focus + 1); }
    else if(k === 'ArrowUp' || k === 'k'){ move(focus - 1); }
    else if(k === 'ArrowRight'){ move((page+1)*size); }
    else if(k === 'ArrowLeft'){ move((page-1)*size); }
    else if(k === 'Enter'){
      if(!multi){ decide(focus, rows[focus][2]); }
      else if(decided[rows[focus][1]] === undefined){ decided[rows[focus][1]] = model(focus); }
      move(focus + 1);
    }
    else if(k === '0' || k === 'Backspace'){ delete decided[rows[focus][1]]; show(); }
    else if(/^[1-9]$/.test(k)){
      var c = rows[focus][5][+k - 1]; if(c === undefined){ return; }
      decide(focus, labels[c]); move(multi ? focus : focus + 1);  // multi-label: toggle, Enter moves on
    } else { return; }
    e.preventDefault();
  });
  function cell(s){ s = String(s); return /[",\\n\\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  document.getElementById('rq-download').onclick = function(){
    var lines = ['path,reviewed_label'];
    rows.forEach(function(r){
      var mine = decided[r[1]]; if(mine === undefined){ return; }
      lines.push(cell(r[1]) + ',' + cell(multi ? JSON.stringify(mine) : mine));
    });
    var blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
    var a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'corrections.csv';
    document.body.appendChild(a); a.click(); a.remove();
  };
  show();
})();
"""
