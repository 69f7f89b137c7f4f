// Bokeh wiring: embed the figure, find its models, and paint the points — into one image
// with raster.js (the scatter glyph only hit-tests and hovers), or, when the private BokehJS
// hooks that needs do not fit the loaded BokehJS, through Bokeh's own public glyph API.

import * as raster from "../raster.js";
import { cfg, state } from "./state.js";

// The bokeh release the private hooks in privateHooks() were written and tested against:
// requirements/constraints.txt pins it (tests/test_points.py checks the two agree).
export const HOOKED_BOKEH = "3.9.2";

const FILL_ALPHA = 205, DIM_ALPHA = 38, SELECTED_ALPHA = 256; // 0.8, 0.15, 1 (of 256)
const FULL_RES_POINTS = 30000; // above this many shown points, draw at 1 image pixel per CSS pixel
// While the view moves (pan, wheel zoom, resize) repaint at most every VIEW_INTERVAL ms:
// Bokeh moves and scales the last image in between, and the last change always paints.
const VIEW_INTERVAL = 100;

// The only place that touches BokehJS internals, the first two needed by the raster painter:
//  1. the scatter view's private _paint() is replaced by one that keeps its screen
//     coordinates current (hit testing and hover use them) but paints nothing;
//  2. core/util/ndarray (through Bokeh.require) makes the image an ndarray, which the
//     image_rgba glyph requires;
//  3. Selection.update_through_union() skips a union of a selection with itself: Bokeh's
//     hit test (UnionRenderers) unions its first renderer's result with itself, a Set of
//     every selected index (~200 ms for a 900k-point lasso) that yields the same indices;
//  4. the scatter's spatial index, which Bokeh rebuilds on every source change before the
//     next paint (~0.5 s at 1M points), is built when first needed — a hit test — or by
//     warmIndex() once the page is idle; until then its bounding box (the data ranges, the
//     layout) comes from one pass over x and y, and the unpainted scatter masks nothing.
// Returns { ndarray, warmIndex } when the first two are in place; null (after a console warning naming
// what did not fit) when the loaded BokehJS is not the version they were written for, or lacks them.
export function privateHooks(scatterView) {
  const Bokeh = window.Bokeh;
  const loaded = Bokeh && Bokeh.version;
  const problems = [];
  if (cfg.bokeh !== HOOKED_BOKEH) problems.push(`the server's bokeh is ${cfg.bokeh}`);
  if (loaded !== cfg.bokeh) problems.push(`the page loaded BokehJS ${loaded}`);
  let ndarray = null;
  if (!problems.length) {
    try {
      ndarray = Bokeh.require("core/util/ndarray").ndarray;
    } catch (err) {
      problems.push(`core/util/ndarray is not there (${err.message})`);
    }
    if (typeof ndarray !== "function") problems.push("core/util/ndarray has no ndarray()");
    if (typeof scatterView._paint !== "function" || typeof scatterView.map_data !== "function") {
      problems.push("the scatter view has no _paint()/map_data()");
    }
  }
  if (problems.length) {
    console.warn(`hl-debug: the map's fast painter hooks into private BokehJS internals written for bokeh `
      + `${HOOKED_BOKEH}, but ${problems.join(" and ")}; falling back to Bokeh's own marker drawing `
      + "(slower without a GPU). Pin bokeh==" + HOOKED_BOKEH + " or update static/map/bokeh.js.");
    return null;
  }
  scatterView._paint = function () { this.map_data(); };
  const warmIndex = lazyIndex(scatterView.glyph); // the renderer's main glyph view holds the index
  const Selection = scatterView.model.data_source.selected.constructor;
  const union = Selection.prototype.update_through_union;
  if (typeof union === "function" && !union.hlSkipsSelf) {
    const skipSelf = function (other) { if (other !== this) union.call(this, other); };
    skipSelf.hlSkipsSelf = true;
    Selection.prototype.update_through_union = skipSelf;
  }
  return { ndarray, warmIndex };
}

// Hook 4 (see privateHooks); returns warmIndex(), a no-op where GlyphView's index getter is not there.
// While the index is stale, `index` is a stand-in: its bbox (what the data ranges and every
// paint's layout read) is the finite points' extent from one pass; anything else builds the
// real index and answers from it.
function lazyIndex(view) {
  let owner = Object.getPrototypeOf(view), getter = null;
  for (; owner && !getter; owner = Object.getPrototypeOf(owner)) {
    const d = Object.getOwnPropertyDescriptor(owner, "index");
    if (d && typeof d.get === "function") getter = d.get;
  }
  const build = view.index_data, mask = view.mask_data;
  if (!getter || typeof build !== "function" || typeof mask !== "function") return () => {};
  let stale = false, box = null;
  const real = () => {
    if (stale) { stale = false; build.call(view); performance.mark("hl:index"); } // a benchmark reads the mark
    return getter.call(view);
  };
  const extent = () => {
    const { x, y, data_size: n } = view;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const a = x[i], b = y[i];
      if (!isFinite(a + b)) continue;
      if (a < x0) x0 = a;
      if (a > x1) x1 = a;
      if (b < y0) y0 = b;
      if (b > y1) y1 = b;
    }
    return { x0, y0, x1, y1 };
  };
  const standIn = new Proxy({}, { get(_, prop) {
    if (prop === "bbox") return box || (box = extent());
    const index = real();
    const value = index == null ? undefined : index[prop];
    return typeof value === "function" ? value.bind(index) : value;
  } });
  view.index_data = function () { this._index = null; stale = true; box = null; };
  Object.defineProperty(view, "index", { configurable: true, get() { return stale ? standIn : getter.call(this); } });
  view.mask_data = function () {
    if (!stale) return mask.call(this);
    this._mask_data = null; // GlyphView.mask_data() without a _mask_data: every point
    try { return mask.call(this); } finally { delete this._mask_data; }
  };
  return () => {
    if (!stale) return;
    const go = () => { if (stale) real(); };
    if (window.requestIdleCallback) window.requestIdleCallback(go, { timeout: 2000 });
    else window.setTimeout(go, 200);
  };
}

// The public-API painter: Bokeh draws the markers from per-point colour columns.
function bokehPaints(renderer) {
  const look = { fill_color: { field: "fill" }, line_color: { field: "line" }, marker: { field: "marker" } };
  for (const [glyph, alpha] of [[renderer.glyph, 0.8], [renderer.selection_glyph, 1], [renderer.nonselection_glyph, 0.15]]) {
    if (glyph && typeof glyph.setv === "function") glyph.setv({ ...look, fill_alpha: alpha, line_alpha: alpha });
  }
}

// Embed the figure into #map; resolves once its models are found and state.source /
// state.view are set (state.view stays null without a map).
export async function embedMap(item, onViewChange) {
  const views = await window.Bokeh.embed.embed_item(item, "map");
  let plot = null, scatter = null, image = null;
  for (const doc of window.Bokeh.documents) {
    state.source = doc.get_model_by_name("points") || state.source;
    plot = doc.get_model_by_name("map") || plot;
    scatter = doc.get_model_by_name("scatter") || scatter;
    image = doc.get_model_by_name("raster") || image;
  }
  const plotView = plot && views.find_one(plot);
  const scatterView = scatter && views.find_one(scatter);
  if (!(plotView && scatterView && image)) return;
  const hooks = privateHooks(scatterView);
  const size = scatter.glyph.size; // plots.MARKER_SIZE: a number or {value}
  state.view = { plot, plotView, raster: image, scatter, painter: hooks ? "raster" : "bokeh",
    size: typeof size === "number" ? size : (size && size.value) || cfg.marker_size || 7, ndarray: hooks && hooks.ndarray,
    warmIndex: hooks ? hooks.warmIndex : () => {} };
  if (!hooks) bokehPaints(scatter);
  for (const model of [plot.x_range, plot.y_range]) model.change.connect(() => onViewChange());
  for (const prop of [plot.properties.inner_width, plot.properties.inner_height]) prop.change.connect(() => onViewChange());
}

// Per shown point: what the raster draws (packed colours, shapes) into state.marks, and for
// Bokeh's own painter the colour columns to add to the source's data. `colorOf(i)` is the
// fill of row i of state.all.
export function buildMarks(data, colorOf) {
  const m = state.shown.length;
  const all = state.all;
  const packed = new Map(); // colour string -> packed RGBA
  const pack = (color) => { let v = packed.get(color); if (v === undefined) { v = raster.pack(color); packed.set(color, v); } return v; };
  const bokeh = state.view && state.view.painter === "bokeh";
  state.marks = { fill: new Uint32Array(m), line: new Uint32Array(m), shape: new Uint8Array(m) };
  if (bokeh) Object.assign(data, { fill: new Array(m), line: new Array(m), marker: new Array(m) });
  const dark = "#222222";
  for (let k = 0; k < m; k++) {
    const i = state.shown[k];
    const fill = colorOf(i), unannotated = all.label.codes[i] < 0; // a diamond with a dark outline
    state.marks.fill[k] = pack(fill);
    state.marks.line[k] = pack(unannotated ? dark : fill);
    state.marks.shape[k] = unannotated ? raster.SHAPES.diamond : raster.SHAPES.circle;
    if (bokeh) {
      data.fill[k] = fill;
      data.line[k] = unannotated ? dark : fill;
      data.marker[k] = unannotated ? "diamond" : "circle";
    }
  }
}

let pending = 0, lastPaint = 0, viewTimer = 0;

// Repaint the points on the next frame (coalesced: many changes, one raster). With
// `afterFrame`, one frame later: a selection shows the inspector's rows first.
export function redraw(afterFrame) {
  if (!state.view || pending) return;
  pending = -1;
  const go = () => { pending = window.requestAnimationFrame(() => { pending = 0; paint(); }); };
  if (afterFrame) window.requestAnimationFrame(go);
  else go();
}

// The view moved: repaint, at most every VIEW_INTERVAL ms.
export function viewChanged() {
  if (viewTimer || !state.view || state.view.painter !== "raster") return;
  const wait = Math.max(0, lastPaint + VIEW_INTERVAL - performance.now());
  viewTimer = window.setTimeout(() => { viewTimer = 0; redraw(); }, wait);
}

function paint() {
  const { view, marks, source } = state;
  if (!view || !marks || !source) return;
  if (view.painter !== "raster") { // Bokeh paints the markers itself
    state.paints++;
    performance.mark("hl:painted");
    return;
  }
  const { plot, plotView } = view;
  const xr = plot.x_range, yr = plot.y_range;
  const box = plotView.frame.bbox;
  const m = source.data.x.length;
  const scale = m > FULL_RES_POINTS ? 1 : Math.min(2, window.devicePixelRatio || 1);
  const width = Math.round(box.width * scale), height = Math.round(box.height * scale);
  if (!(width > 0 && height > 0 && xr.end > xr.start && yr.end > yr.start)) return;
  const selected = source.selected.indices;
  const order = new Int32Array(m), alpha = new Uint16Array(m);
  if (!selected.length) {
    for (let k = 0; k < m; k++) order[k] = k;
    alpha.fill(FILL_ALPHA);
  } else {
    const on = new Uint8Array(m);
    for (const k of selected) on[k] = 1;
    let j = 0;
    for (let k = 0; k < m; k++) if (!on[k]) { order[j] = k; alpha[j++] = DIM_ALPHA; }
    for (let k = 0; k < m; k++) if (on[k]) { order[j] = k; alpha[j++] = SELECTED_ALPHA; } // selected on top
  }
  const image = raster.rasterize({ width, height, x0: xr.start, x1: xr.end, y0: yr.start, y1: yr.end,
    x: source.data.x, y: source.data.y, fill: marks.fill, line: marks.line, shape: marks.shape, order, alpha,
    size: view.size, scale });
  view.raster.data = { image: [view.ndarray(image, { shape: [height, width] })], x: [xr.start], y: [yr.start],
    dw: [xr.end - xr.start], dh: [yr.end - yr.start] };
  state.paints++;
  lastPaint = performance.now();
  performance.mark("hl:painted");
  view.warmIndex(); // the hit tests' index, built while the page is idle (hook 4)
}

// Where the point with this id is drawn, in viewport pixels (null when not shown).
export function screenOf(id) {
  const { view, source } = state;
  if (!view || !source) return null;
  const k = source.data.id.indexOf(id);
  if (k < 0) return null;
  const { plot, plotView } = view;
  const box = plotView.frame.bbox, canvas = plotView.canvas.el.getBoundingClientRect();
  const fx = (source.data.x[k] - plot.x_range.start) / (plot.x_range.end - plot.x_range.start);
  const fy = (source.data.y[k] - plot.y_range.start) / (plot.y_range.end - plot.y_range.start);
  return { x: canvas.left + box.left + fx * box.width, y: canvas.top + box.top + (1 - fy) * box.height };
}
