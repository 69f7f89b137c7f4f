// The map page's shared mutable state, in one object: what the URL holds (colour, filters,
// search, selection), the decoded payload, the Bokeh models and what is drawn. Every other
// module reads and writes it here; nothing else keeps page state.

const hl = window.hl;
const params = new URLSearchParams(window.location.search);

// From the page (webapp/plots.py map_config): labels, palette, clusters, payload columns and
// format, the Bokeh source's columns, colour-by choices, splits, bokeh version, marker size.
export const cfg = hl.readJSON("map-config") || { labels: [], palette: [], color_by: [], source: {}, splits: [],
  split_colors: {} };
export const item = hl.readJSON("map-item"); // the Bokeh figure (json_item); null without a map

export const MAX_INSPECT = 200; // rows the inspector lists of a selection

export const state = {
  // in the URL
  color: params.get("color") || "label",
  intent: params.get("intent") || "",
  usage: params.get("usage") || "",
  cluster: params.get("cluster") || "",
  q: params.get("q") || "",
  ids: (params.get("ids") || "").split(",").filter((s) => /^\d+$/.test(s)).map(Number),
  selectAll: params.get("select") === "all",
  // the data
  all: null, // decoded columns of /api/points (decode.js)
  texts: null, // every row's text, as `all` (/api/points/text, fetched once the map is drawn)
  source: null, // the Bokeh ColumnDataSource named "points"
  shown: [], // indices into `all` currently in the source
  marks: null, // what the raster draws per shown point: packed colours, shapes (rebuilt with the source)
  view: null, // {plot, plotView, raster, scatter, size, painter, ndarray}: set once Bokeh has rendered the map
  quiet: false, // true while the page sets the selection itself
  paints: 0, // repaints so far (tests and benchmarks wait on it)
};

export const $ = (id) => document.getElementById(id);

export function status(text) {
  const el = $("map-status");
  if (el) el.textContent = text;
}

let savedQS = window.location.search.slice(1);

// Write colour, filters, search and a small selection into the URL (replaceState: no history spam).
export function saveURL() {
  const p = new URLSearchParams();
  if (state.color !== "label") p.set("color", state.color);
  for (const key of ["intent", "usage", "cluster", "q"]) if (state[key]) p.set(key, state[key]);
  if (state.ids.length && state.ids.length <= 500) p.set("ids", state.ids.join(","));
  const qs = p.toString();
  if (qs === savedQS) return;
  savedQS = qs;
  window.history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
}
