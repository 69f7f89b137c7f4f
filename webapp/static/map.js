// The map page (an ES module; its rooms are in static/map/): fills the Bokeh "points" source
// from /api/points, colours and filters in the browser, and links the selection to the
// inspector. plots.py attaches a CustomJS to source.selected that calls
// window.hlDebug.onSelect(indices).
//
//   map/state.js      the one shared state object, the URL
//   map/decode.js     the /api/points wire format (hl_debug/mapdata.py) -> typed arrays
//   map/colours.js    colour by, legend
//   map/inspector.js  the inspector's rows, neighbours
//   map/bokeh.js      embedding, painting, the private BokehJS hooks (one function)
//   map/hover.js      the hover card (the row nearest the cursor)
//   raster.js         the software rasteriser

import { embedMap, buildMarks, redraw, screenOf, viewChanged } from "./map/bokeh.js";
import { colorer, drawLegend } from "./map/colours.js";
import { hideHover, initHover, onHover } from "./map/hover.js";
import { codeOf, decodePayload } from "./map/decode.js";
import { onSelectIds } from "./map/inspector.js";
import { $, MAX_INSPECT, cfg, item, saveURL, state, status } from "./map/state.js";

const hl = window.hl;
const controls = { color: $("color-by"), intent: $("filter-intent"), usage: $("filter-usage"), cluster: $("filter-cluster"),
  q: $("search") };
for (const [key, el] of Object.entries(controls)) {
  if (el && state[key] !== undefined) el.value = state[key];
}
if (controls.color && controls.color.value !== state.color) state.color = controls.color.value || "label";

// which rows of state.all the filters keep
function keeper() {
  const all = state.all;
  const intent = state.intent ? codeOf(all.label, state.intent) : null;
  const usage = state.usage ? codeOf(all.usage, state.usage) : null;
  const cluster = state.cluster !== "" ? Number(state.cluster) : null;
  return (i) => (intent === null || all.label.codes[i] === intent)
    && (usage === null || all.usage.codes[i] === usage)
    && (cluster === null || all.cluster_id[i] === cluster)
    && all.x[i] === all.x[i]; // NaN: no map position
}

// The Bokeh source's columns (plots.SOURCE_COLUMNS) for the shown rows: numbers copied into
// typed arrays, categories and integers with a "missing" text as strings.
function sourceData() {
  const all = state.all, shown = state.shown, m = shown.length;
  const data = {};
  for (const [name, { from, missing }] of Object.entries(cfg.source)) {
    const col = all[from];
    if (col && col.codes) {
      const out = new Array(m);
      for (let k = 0; k < m; k++) { const c = col.codes[shown[k]]; out[k] = c < 0 ? missing : col.cats[c]; }
      data[name] = out;
    } else if (Array.isArray(col) || missing !== null) { // text, or numbers shown as text
      const out = new Array(m);
      for (let k = 0; k < m; k++) { const v = col[shown[k]]; out[k] = v === null || v !== v ? missing : missing === null ? v : String(v); }
      data[name] = out;
    } else {
      const out = new (name === "x" || name === "y" ? Float32Array : col.constructor)(m);
      for (let k = 0; k < m; k++) out[k] = col[shown[k]];
      data[name] = out;
    }
  }
  return data;
}

function rebuild() {
  const { all, source } = state;
  if (!all || !source) return;
  const c = colorer(state.color);
  const keep = keeper();
  state.shown = [];
  for (let i = 0; i < all.n; i++) if (keep(i)) state.shown.push(i);
  const data = sourceData();
  buildMarks(data, c.color);
  hideHover(); // its row index is the old source's
  state.quiet = true;
  source.selected.indices = [];
  source.data = data;
  state.quiet = false;
  drawLegend(c.legend);
  status(`${state.shown.length} of ${all.n} shown`);
  selectIds(state.ids, false);
  redraw();
}

// Select the points with these ids; `inspect` lets the selection event fill the inspector.
function selectIds(ids, inspect) {
  ids = Array.from(ids);
  const source = state.source;
  if (!source) {
    onSelectIds(ids);
    return;
  }
  const want = new Set(ids);
  const indices = [];
  source.data.id.forEach((id, k) => { if (want.has(id)) indices.push(k); });
  state.quiet = !inspect;
  source.selected.indices = indices;
  state.quiet = false;
  if (!inspect) onSelectIds(ids);
}

function onSelect(indices) {
  redraw(true); // the selection is drawn on top, the rest dimmed
  const source = state.source;
  if (state.quiet || !source) return;
  const ids = indices.map((k) => source.data.id[k]);
  onSelectIds(ids, indices.slice(0, MAX_INSPECT).map((k) => state.shown[k]));
}

async function search() {
  state.q = controls.q.value.trim();
  if (!state.q) { saveURL(); return; }
  try {
    const body = await hl.getJSON("/api/search?q=" + encodeURIComponent(state.q));
    status(`${body.ids.length} match${body.ids.length === 1 ? "" : "es"} for “${state.q}”`);
    selectIds(body.ids, true);
    if (!state.source) onSelectIds(body.ids);
  } catch (err) {
    status(err.message);
  }
}

// The hovered row's text (map/hover.js): k indexes the Bokeh source, i.e. state.shown.
function textAt(k) {
  if (!state.texts) return "(text loading…)";
  const t = state.texts[state.shown[k]];
  return t === undefined || t === null ? "" : t;
}

// The texts come in their own body (hl_debug/mapdata.py texts_body), after the map is drawn:
// the first paint does not wait for them (60% of the bytes at 1M rows).
async function loadTexts() {
  const body = await hl.getJSON("/api/points/text");
  if (body.key !== state.all.key || body.n !== state.all.n) {
    status("the map's data changed since this page loaded: reload it to see the new data");
    return;
  }
  state.texts = body.columns.text.data;
  performance.mark("hl:texts");
  document.body.dataset.texts = "1";
}

window.hlDebug = { onSelect, onHover, selectIds, screenOf, textAt,
  state: () => {
    const { all, source, marks, view, shown, texts, ...rest } = state;
    return { ...rest, shown: shown.length, painter: view ? view.painter : null };
  } };

for (const key of ["color", "intent", "usage", "cluster"]) {
  if (controls[key]) controls[key].addEventListener("change", () => { state[key] = controls[key].value; saveURL(); rebuild(); });
}
$("controls").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
controls.q.addEventListener("search", search);

async function init() {
  if (!item || !window.Bokeh) {
    if (state.ids.length) onSelectIds(state.ids);
    return;
  }
  status("loading points…");
  // prefetch.js's worker fetched and decoded the points while BokehJS loaded; ask here if it failed
  const early = window.hlPoints ? window.hlPoints.catch((err) => {
    console.warn("hl-debug: the points worker failed (" + err.message + "); fetching the points here");
    return null;
  }) : Promise.resolve(null);
  const [, all] = await Promise.all([embedMap(item, viewChanged), early.then((decoded) => decoded
    || hl.getJSON("/api/points").then((body) => decodePayload(body, cfg.format)))]);
  initHover($("map"), textAt);
  performance.mark("hl:fetched"); // marks let benchmarks/webapp_browser.py split the load time
  state.all = all;
  performance.mark("hl:decoded");
  rebuild();
  performance.mark("hl:filled");
  if (state.selectAll) selectIds(state.source.data.id, true);
  else if (state.q && !state.ids.length) search();
  document.body.dataset.ready = "1";
  // the texts' 40 MB at 1M rows would be parsed on this thread while the first paint is due
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  await loadTexts().catch((err) => status("could not load the texts: " + err.message));
}
init().catch((err) => status("could not load the map: " + err.message));
