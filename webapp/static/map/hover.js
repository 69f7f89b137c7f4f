// The map's hover card: the row nearest the cursor, drawn by the page. Bokeh's own tooltip
// renders an HTML template for every point under the cursor before it keeps `limit` of them
// — hundreds in a dense region at 1M points, hundreds of ms per mouse move (RESULTS.md, "Load,
// lasso…") — so plots.py gives the hover tool a callback instead (tooltips=None) that calls
// onHover() with the hit indices. Text goes in with textContent: never parsed as HTML.

import { valueAt } from "./decode.js";
import { state } from "./state.js";

const OFFSET = 14; // px from the cursor
// [shown as, payload column (state.all), shown when missing]
const FIELDS = [["label", "label", "(unannotated)"], ["predicted", "predicted_label", "(none)"],
  ["cluster", "cluster_id", ""], ["id", "id", ""]];

let card = null;
let textOf = null; // map.js's textAt(k): the texts come after the map is drawn
let dragging = false; // a lasso, box or pan is under way: no card (and no work) until release

function ensureCard() {
  if (card) return card;
  card = document.createElement("div");
  card.className = "map-hover";
  card.setAttribute("role", "tooltip");
  card.hidden = true;
  document.body.appendChild(card);
  return card;
}

export function hideHover() {
  if (card) card.hidden = true;
}

// Once per page: no card while a button is held on the map, or once the pointer leaves it.
export function initHover(mapEl, textAt) {
  textOf = textAt;
  mapEl.addEventListener("pointerdown", () => { dragging = true; hideHover(); });
  document.addEventListener("pointerup", () => { dragging = false; });
  mapEl.addEventListener("pointerleave", hideHover);
}

// The hit closest to the cursor, in screen pixels (k indexes the Bokeh source).
function nearest(indices, sx, sy) {
  const { x, y } = state.source.data;
  const frame = state.view.plotView.frame;
  let best = -1, bestD = Infinity;
  for (const k of indices) {
    const dx = frame.x_scale.compute(x[k]) - sx, dy = frame.y_scale.compute(y[k]) - sy;
    const d = dx * dx + dy * dy;
    if (d < bestD) { bestD = d; best = k; }
  }
  return best;
}

export function onHover(indices, geometry) {
  if (dragging || !state.source || !state.view || !indices || !indices.length || !isFinite(geometry.sx + geometry.sy)) {
    hideHover();
    return;
  }
  const k = nearest(indices, geometry.sx, geometry.sy);
  if (k < 0) { hideHover(); return; }
  const i = state.shown[k]; // the row of state.all
  const el = ensureCard();
  el.replaceChildren();
  const text = document.createElement("div");
  text.className = "map-hover-text";
  text.textContent = textOf ? textOf(k) : "";
  el.appendChild(text);
  for (const [name, column, missing] of FIELDS) {
    const row = document.createElement("div");
    const key = document.createElement("span");
    key.textContent = name + ": ";
    const v = valueAt(state.all[column], i);
    row.append(key, v === null ? missing : String(v));
    el.appendChild(row);
  }
  const box = state.view.plotView.el.getBoundingClientRect();
  el.hidden = false;
  const cx = box.left + geometry.sx, cy = box.top + geometry.sy;
  const w = el.offsetWidth, h = el.offsetHeight; // flip to the other side at the window's edge
  el.style.left = `${cx + OFFSET + w > window.innerWidth ? Math.max(0, cx - OFFSET - w) : cx + OFFSET}px`;
  el.style.top = `${cy + OFFSET + h > window.innerHeight ? Math.max(0, cy - OFFSET - h) : cy + OFFSET}px`;
}
