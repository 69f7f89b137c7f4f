// The inspector beside the map: the selected utterances' rows (first from the map's own
// columns, then the database's from /api/utterances) and, on a row click, its neighbours.

import { valueAt } from "./decode.js";
import { $, MAX_INSPECT, saveURL, state } from "./state.js";

const hl = window.hl;
const FIRST_ROWS = 30; // rows laid out at once; the rest follow after a frame (the table is in a scroll box)

let request = 0;
let asked = ""; // the ids of the latest inspector request: a repeated selection event asks nothing new
let filling = 0; // the latest fill: a newer one abandons the rest of an older one

// The inspector's rows for `ids` from the map's own columns (no round trip): what the table
// shows first; the database's rows replace them when they arrive. `at` lists each id's index
// into state.all when the caller knows it (a selection on the map).
export function localRows(ids, at) {
  const all = state.all;
  if (!all) return null;
  if (!at) { // one pass over the ids, not a 100k-entry Map
    const want = new Map(Array.from(ids, (id, j) => [id, j]));
    at = new Array(ids.length);
    for (let i = 0; i < all.n; i++) { const j = want.get(all.id[i]); if (j !== undefined) at[j] = i; }
  }
  const names = Object.keys(all).filter((k) => !["n", "format", "has_map", "id"].includes(k));
  const rows = [];
  for (let j = 0; j < ids.length; j++) {
    const i = at[j];
    if (i === undefined) continue;
    const row = { id: ids[j] };
    for (const name of names) row[name] = valueAt(all[name], i);
    rows.push(row);
  }
  return rows;
}

function inspectorRow(r) {
  const tr = document.createElement("tr");
  tr.dataset.id = r.id;
  hl.cell(tr, r.id);
  hl.cell(tr, r.text, "text");
  const lab = r.label === null ? "(unannotated)" : r.label !== r.intent ? `${r.label} (was ${r.intent || "unannotated"})` : r.label;
  hl.cell(tr, lab, r.label === null ? "unannotated" : "");
  hl.cell(tr, r.predicted_label === null || r.predicted_label === undefined ? "" : `${r.predicted_label} ${hl.pct(r.confidence)}`);
  hl.cell(tr, r.cluster_id);
  hl.cell(tr, hl.fmt(r.issue_score, 3));
  const oos = hl.cell(tr, hl.fmt(r.oos_score, 2)); // the out-of-scope signal's score, when it ran
  if (r.oos_group !== null && r.oos_group !== undefined) oos.title = `out-of-scope candidate, group ${r.oos_group}`;
  // a suggestion the detector did not flag is shown muted: it is the runner-up, not a verdict
  const sug = hl.cell(tr, r.suggested_label && r.suggested_label !== r.label ? r.suggested_label : "",
    r.flagged === 0 ? "weak" : r.flagged === 1 ? "flagged" : "");
  if (r.flagged === 0 && sug.textContent) sug.title = "not flagged as a likely error";
  tr.addEventListener("click", () => showNeighbors(r.id, tr));
  return tr;
}

function fillInspector(tbody, rows) {
  const mine = ++filling;
  const old = [...tbody.rows];
  if (old.length === rows.length && old.every((tr, j) => Number(tr.dataset.id) === rows[j].id)) {
    // the same rows (the database's answer after the map's own): touch only changed cells
    rows.forEach((r, j) => {
      const fresh = inspectorRow(r);
      [...fresh.cells].forEach((td, c) => {
        const cur = old[j].cells[c];
        if (cur.textContent !== td.textContent || cur.className !== td.className || cur.title !== td.title) old[j].replaceChild(td, cur);
      });
    });
    return;
  }
  hl.clear(tbody);
  const add = (from, to) => { for (let j = from; j < to; j++) tbody.appendChild(inspectorRow(rows[j])); };
  add(0, Math.min(FIRST_ROWS, rows.length));
  if (rows.length > FIRST_ROWS) {
    window.requestAnimationFrame(() => setTimeout(() => { if (mine === filling) add(FIRST_ROWS, rows.length); }, 0));
  }
}

// Show the utterances `ids` (a plain array) in the inspector and keep them in the URL.
export async function onSelectIds(ids, at) {
  const key = ids.slice(0, MAX_INSPECT).join(",");
  if (key === asked && ids.length === state.ids.length) return;
  asked = key;
  state.ids = ids;
  saveURL();
  const count = $("sel-count");
  count.textContent = ids.length ? `${ids.length} selected${ids.length > MAX_INSPECT ? `, first ${MAX_INSPECT} shown` : ""}` : "";
  const tbody = document.querySelector("#inspector tbody");
  if (!ids.length) {
    hl.clear(tbody);
    return;
  }
  const first = ids.slice(0, MAX_INSPECT);
  const local = localRows(first, at && at.slice(0, MAX_INSPECT));
  if (local && local.length) fillInspector(tbody, local);
  const mine = ++request;
  let body;
  try {
    body = await hl.getJSON("/api/utterances?ids=" + first.join(","));
  } catch (err) {
    if (mine === request) {
      if (!local || !local.length) hl.clear(tbody);
      count.textContent = err.message;
      asked = "";
    }
    return;
  }
  if (mine !== request) return; // a newer selection won
  const active = tbody.querySelector("tr.active");
  fillInspector(tbody, body.rows);
  if (active) { // keep the row whose neighbours are shown highlighted
    const again = tbody.querySelector(`tr[data-id="${active.dataset.id}"]`);
    if (again) again.classList.add("active");
  }
}

async function showNeighbors(id, tr) {
  document.querySelectorAll("#inspector tr.active").forEach((el) => el.classList.remove("active"));
  if (tr) tr.classList.add("active");
  $("nn-of").textContent = `of #${id}`;
  const tbody = document.querySelector("#neighbors tbody");
  hl.clear(tbody);
  try {
    const body = await hl.getJSON("/api/neighbors/" + id);
    for (const n of body.neighbors) {
      const row = document.createElement("tr");
      hl.cell(row, n.rank);
      hl.cell(row, hl.fmt(n.similarity, 3));
      hl.cell(row, n.text, "text");
      hl.cell(row, n.label === null ? "(unannotated)" : n.label);
      tbody.appendChild(row);
    }
  } catch (err) {
    const row = document.createElement("tr");
    hl.cell(row, err.message).colSpan = 4;
    tbody.appendChild(row);
  }
}
