// The map page: fills the Bokeh "points" source from /api/points, colours and filters in
// the browser, and links the selection to the inspector. plots.py attaches a CustomJS to
// source.selected that calls window.hlDebug.onSelect(indices).
//
// /api/points sends typed arrays in base64 (webapp/points.py): numbers decode to
// Float32Array/Int32Array (NaN = missing), categorical columns to {codes, cats} (code -1 =
// missing), so 100k points cost a few MB and no per-point objects.
(function () {
  "use strict";
  const hl = window.hl;
  const item = hl.readJSON("map-item");
  const cfg = hl.readJSON("map-config") || { labels: [], palette: [] };
  const params = new URLSearchParams(window.location.search);
  const MAX_INSPECT = 200;
  const GREY = "#bdbdbd";
  const USAGE_COLORS = { training: "#1f77b4", validation: "#ff7f0e", testing: "#2ca02c" };
  const RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]; // viridis stops
  const NUMERIC = new Set(["issue_score", "entropy"]);

  const state = {
    color: params.get("color") || "label",
    intent: params.get("intent") || "",
    usage: params.get("usage") || "",
    cluster: params.get("cluster") || "",
    q: params.get("q") || "",
    ids: (params.get("ids") || "").split(",").filter((s) => /^\d+$/.test(s)).map(Number),
    selectAll: params.get("select") === "all",
  };
  let all = null; // decoded columns from /api/points
  let source = null; // the Bokeh ColumnDataSource named "points"
  let shown = []; // indices into `all` currently in the source
  let quiet = false; // true while we set the selection ourselves

  const $ = (id) => document.getElementById(id);
  const controls = { color: $("color-by"), intent: $("filter-intent"), usage: $("filter-usage"), cluster: $("filter-cluster"), q: $("search") };
  for (const [key, el] of Object.entries(controls)) {
    if (el && state[key] !== undefined) el.value = state[key];
  }
  if (controls.color && controls.color.value !== state.color) state.color = controls.color.value || "label";

  function status(text) {
    const el = $("map-status");
    if (el) el.textContent = text;
  }

  const ARRAYS = { int8: Int8Array, int16: Int16Array, int32: Int32Array, float16: Uint16Array, float32: Float32Array, float64: Float64Array };

  function half(h) { // IEEE 754 binary16 -> number
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    if (exp === 0) return sign * frac * 2 ** -24;
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }

  function decode(col) {
    if (col.dtype === "str") return col.data;
    let bytes;
    if (Uint8Array.fromBase64) bytes = Uint8Array.fromBase64(col.data); // native (Chrome 140+, Firefox 133+)
    else {
      const bin = atob(col.data);
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    }
    let arr = new ARRAYS[col.dtype](bytes.buffer);
    if (col.dtype === "float16") arr = Float32Array.from(arr, half);
    if (col.categories) return { codes: arr, cats: col.categories };
    if (col.null !== undefined && arr.includes(col.null)) arr = Float64Array.from(arr, (v) => (v === col.null ? NaN : v));
    return arr;
  }

  // categorical column value at row i (null when missing)
  const cat = (col, i) => (col.codes[i] < 0 ? null : col.cats[col.codes[i]]);
  // the code of `value` in a categorical column: -1 for missing ("__none__"), -2 when absent
  const codeOf = (col, value) => (value === "__none__" ? -1 : col.cats.indexOf(value) < 0 ? -2 : col.cats.indexOf(value));

  let savedQS = window.location.search.slice(1);
  function saveURL() {
    const p = new URLSearchParams();
    if (state.color !== "label") p.set("color", state.color);
    for (const key of ["intent", "usage", "cluster", "q"]) if (state[key]) p.set(key, state[key]);
    if (state.ids.length && state.ids.length <= 500) p.set("ids", state.ids.join(","));
    const qs = p.toString();
    if (qs === savedQS) return;
    savedQS = qs;
    window.history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
  }

  function ramp(t) {
    const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const a = parseInt(RAMP[i].slice(1), 16), b = parseInt(RAMP[i + 1].slice(1), 16);
    const ch = (s) => Math.round(((a >> s) & 255) * (1 - f) + ((b >> s) & 255) * f);
    return "#" + ((1 << 24) | (ch(16) << 16) | (ch(8) << 8) | ch(0)).toString(16).slice(1);
  }

  function colorer(field) {
    const pal = cfg.palette;
    if (NUMERIC.has(field)) {
      const v = all[field];
      let lo = Infinity, hi = -Infinity; // a loop, not Math.min(...): 100k arguments overflow the stack
      for (let i = 0; i < v.length; i++) if (v[i] === v[i]) { lo = Math.min(lo, v[i]); hi = Math.max(hi, v[i]); }
      const legend = lo <= hi ? [[`low (${hl.fmt(lo)})`, ramp(0)], [`high (${hl.fmt(hi)})`, ramp(1)], ["no value", GREY]] : [["no value", GREY]];
      const steps = Array.from({ length: 64 }, (_, k) => ramp(k / 63)); // 64 shades: no per-point string building
      return { legend, color: (i) => (v[i] !== v[i] ? GREY : steps[Math.round(63 * (hi > lo ? (v[i] - lo) / (hi - lo) : 0.5))]) };
    }
    // categorical columns: one colour per category, looked up by code
    const byCode = (col, colorOf) => { const table = col.cats.map(colorOf); return (i) => (col.codes[i] < 0 ? GREY : table[col.codes[i]]); };
    if (field === "annotated") {
      return { legend: [["annotated", "#1f77b4"], ["unannotated", "#ff7f0e"]], color: (i) => (all.label.codes[i] < 0 ? "#ff7f0e" : "#1f77b4") };
    }
    if (field === "usage") {
      return { legend: [...Object.entries(USAGE_COLORS), ["none", GREY]], color: byCode(all.usage, (u) => USAGE_COLORS[u] || GREY) };
    }
    if (field === "cluster_id") {
      const seen = new Set();
      for (const c of all.cluster_id) if (c >= 0) seen.add(c); // NaN (none) and -1 (noise) are not >= 0
      const ids = [...seen].sort((a, b) => a - b);
      const legend = ids.slice(0, 20).map((c) => [`cluster ${c}`, pal[c % pal.length]]);
      legend.push(["noise / none", GREY]);
      return { legend, color: (i) => { const c = all.cluster_id[i]; return c >= 0 ? pal[c % pal.length] : GREY; } };
    }
    // label / predicted_label: one colour per intent, fixed by the intent's position
    const index = new Map(cfg.labels.map((l, k) => [l, k]));
    const colorOf = (l) => pal[(index.has(l) ? index.get(l) : index.size) % pal.length];
    const legend = cfg.labels.map((l) => [l, colorOf(l)]);
    legend.push([field === "label" ? "unannotated" : "no prediction", GREY]);
    return { legend, color: byCode(all[field], colorOf) };
  }

  function keeper() {
    const intent = state.intent ? codeOf(all.label, state.intent) : null;
    const usage = state.usage ? codeOf(all.usage, state.usage) : null;
    const cluster = state.cluster !== "" ? Number(state.cluster) : null;
    return (i) => (intent === null || all.label.codes[i] === intent)
      && (usage === null || all.usage.codes[i] === usage)
      && (cluster === null || all.cluster_id[i] === cluster)
      && all.x[i] === all.x[i]; // NaN: no map position
  }

  function drawLegend(entries) {
    const el = $("legend");
    if (!el) return;
    hl.clear(el);
    for (const [name, color] of entries) {
      const span = document.createElement("span");
      span.className = "legend-item";
      const sw = document.createElement("i");
      sw.style.background = color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(name));
      el.appendChild(span);
    }
  }

  // What the raster draws, per point in the source (parallel to source.data): packed
  // colours and marker shapes; rebuilt with the source.
  let marks = null;
  let view = null; // {plot, plotView, raster}: set once Bokeh has rendered the map
  let pending = 0;
  let paints = 0; // rasters drawn so far (tests and benchmarks wait on it)
  const FILL_ALPHA = 205, DIM_ALPHA = 38, SELECTED_ALPHA = 256; // 0.8, 0.15, 1 (of 256)
  const FULL_RES_POINTS = 30000; // above this many shown points, draw at 1 image pixel per CSS pixel

  function rebuild() {
    if (!all || !source) return;
    const c = colorer(state.color);
    const keep = keeper();
    shown = [];
    for (let i = 0; i < all.n; i++) if (keep(i)) shown.push(i);
    const m = shown.length;
    const data = { x: new Float32Array(m), y: new Float32Array(m), id: new all.id.constructor(m), text: new Array(m),
      label: new Array(m), predicted_label: new Array(m), cluster: new Array(m) };
    marks = { fill: new Uint32Array(m), line: new Uint32Array(m), shape: new Uint8Array(m) };
    const packed = new Map(); // colour string -> packed RGBA
    const pack = (color) => { let v = packed.get(color); if (v === undefined) { v = window.hlRaster.pack(color); packed.set(color, v); } return v; };
    const dark = window.hlRaster.pack("#222222");
    const labels = all.label.cats, predicted = all.predicted_label.cats;
    for (let k = 0; k < m; k++) {
      const i = shown[k];
      const lc = all.label.codes[i], pc = all.predicted_label.codes[i], cl = all.cluster_id[i];
      data.x[k] = all.x[i];
      data.y[k] = all.y[i];
      data.id[k] = all.id[i];
      data.text[k] = all.text[i];
      data.label[k] = lc < 0 ? "(unannotated)" : labels[lc];
      data.predicted_label[k] = pc < 0 ? "(none)" : predicted[pc];
      data.cluster[k] = cl === cl ? String(cl) : "";
      const fill = pack(c.color(i));
      marks.fill[k] = fill;
      marks.line[k] = lc < 0 ? dark : fill; // unannotated: a diamond with a dark outline
      marks.shape[k] = lc < 0 ? window.hlRaster.SHAPES.diamond : window.hlRaster.SHAPES.circle;
    }
    quiet = true;
    source.selected.indices = [];
    source.data = data;
    quiet = false;
    drawLegend(c.legend);
    status(`${shown.length} of ${all.n} shown`);
    selectIds(state.ids, false);
    redraw();
  }

  // Repaint the points on the next frame (coalesced: many changes, one raster). With
  // `afterFrame`, one frame later: a selection shows the inspector's rows first.
  function redraw(afterFrame) {
    if (!view || pending) return;
    pending = -1;
    const go = () => { pending = window.requestAnimationFrame(() => { pending = 0; paint(); }); };
    if (afterFrame) window.requestAnimationFrame(go);
    else go();
  }

  // While the view moves (pan, wheel zoom, resize) repaint at most every VIEW_INTERVAL ms:
  // Bokeh moves and scales the last image in between, and the last change always paints.
  const VIEW_INTERVAL = 100;
  let lastPaint = 0, viewTimer = 0;
  function viewChanged() {
    if (viewTimer) return;
    const wait = Math.max(0, lastPaint + VIEW_INTERVAL - performance.now());
    viewTimer = window.setTimeout(() => { viewTimer = 0; redraw(); }, wait);
  }

  function paint() {
    if (!view || !marks || !source) return;
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
    const image = window.hlRaster.rasterize({ width, height, x0: xr.start, x1: xr.end, y0: yr.start, y1: yr.end,
      x: source.data.x, y: source.data.y, fill: marks.fill, line: marks.line, shape: marks.shape, order, alpha,
      size: view.size, scale });
    view.raster.data = { image: [view.ndarray(image, { shape: [height, width] })], x: [xr.start], y: [yr.start],
      dw: [xr.end - xr.start], dh: [yr.end - yr.start] };
    paints++;
    lastPaint = performance.now();
    performance.mark("hl:painted");
  }

  function selectIds(ids, inspect) {
    if (!source) {
      onSelectIds(ids);
      return;
    }
    const want = new Set(ids);
    const indices = [];
    source.data.id.forEach((id, k) => { if (want.has(id)) indices.push(k); });
    quiet = !inspect;
    source.selected.indices = indices;
    quiet = false;
    if (!inspect) onSelectIds(ids);
  }

  function onSelect(indices) {
    redraw(true); // the selection is drawn on top, the rest dimmed
    if (quiet || !source) return;
    const ids = indices.map((k) => source.data.id[k]);
    onSelectIds(ids, indices.slice(0, MAX_INSPECT).map((k) => shown[k]));
  }

  let request = 0;
  let asked = ""; // the ids of the latest inspector request: a repeated selection event asks nothing new

  // The inspector's rows for `ids` from the map's own columns (no round trip): what the
  // table shows first; the database's rows replace them when they arrive. `at` lists
  // each id's index into `all` when the caller knows it (a selection on the map).
  function localRows(ids, at) {
    if (!all) return null;
    if (!at) { // one pass over the ids, not a 100k-entry Map
      const want = new Map(ids.map((id, j) => [id, j]));
      at = new Array(ids.length);
      for (let i = 0; i < all.n; i++) { const j = want.get(all.id[i]); if (j !== undefined) at[j] = i; }
    }
    const val = (col, i) => (col ? cat(col, i) : null);
    const num = (arr, i) => (arr && arr[i] === arr[i] ? arr[i] : null);
    const rows = [];
    for (let j = 0; j < ids.length; j++) {
      const id = ids[j], i = at[j];
      if (i === undefined) continue;
      rows.push({ id, text: all.text[i], label: val(all.label, i), intent: val(all.intent, i),
        predicted_label: val(all.predicted_label, i), confidence: num(all.confidence, i), cluster_id: num(all.cluster_id, i),
        issue_score: num(all.issue_score, i), suggested_label: val(all.suggested_label, i), flagged: num(all.flagged, i) });
    }
    return rows;
  }

  const FIRST_ROWS = 30; // rows laid out at once; the rest follow after a frame (the table is in a scroll box)

  function inspectorRow(r) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    hl.cell(tr, r.id);
    hl.cell(tr, r.text, "text");
    const lab = r.label === null ? "(unannotated)" : r.label !== r.intent ? `${r.label} (was ${r.intent || "unannotated"})` : r.label;
    hl.cell(tr, lab, r.label === null ? "unannotated" : "");
    hl.cell(tr, r.predicted_label === null ? "" : `${r.predicted_label} ${hl.pct(r.confidence)}`);
    hl.cell(tr, r.cluster_id);
    hl.cell(tr, hl.fmt(r.issue_score, 3));
    // a suggestion the detector did not flag is shown muted: it is the runner-up, not a verdict
    const sug = hl.cell(tr, r.suggested_label && r.suggested_label !== r.label ? r.suggested_label : "",
      r.flagged === 0 ? "weak" : r.flagged === 1 ? "flagged" : "");
    if (r.flagged === 0 && sug.textContent) sug.title = "not flagged as a likely error";
    tr.addEventListener("click", () => showNeighbors(r.id, tr));
    return tr;
  }

  let filling = 0; // the latest fill: a newer one abandons the rest of an older one
  function fillInspector(tbody, rows) {
    const mine = ++filling;
    const old = [...tbody.rows];
    if (old.length === rows.length && old.every((tr, j) => Number(tr.dataset.id) === rows[j].id)) {
      // the same rows (the database's answer after the map's own): touch only changed cells
      rows.forEach((r, j) => {
        const fresh = inspectorRow(r);
        [...fresh.cells].forEach((td, c) => {
          const cur = old[j].cells[c];
          if (cur.textContent !== td.textContent || cur.className !== td.className) old[j].replaceChild(td, cur);
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

  async function onSelectIds(ids, at) {
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

  async function search() {
    state.q = controls.q.value.trim();
    if (!state.q) { saveURL(); return; }
    try {
      const body = await hl.getJSON("/api/search?q=" + encodeURIComponent(state.q));
      status(`${body.ids.length} match${body.ids.length === 1 ? "" : "es"} for “${state.q}”`);
      selectIds(body.ids, true);
      if (!source) onSelectIds(body.ids);
    } catch (err) {
      status(err.message);
    }
  }

  // Where the point with this id is drawn, in viewport pixels (null when not shown).
  function screenOf(id) {
    if (!view || !source) return null;
    const k = source.data.id.indexOf(id);
    if (k < 0) return null;
    const { plot, plotView } = view;
    const box = plotView.frame.bbox, canvas = plotView.canvas.el.getBoundingClientRect();
    const fx = (source.data.x[k] - plot.x_range.start) / (plot.x_range.end - plot.x_range.start);
    const fy = (source.data.y[k] - plot.y_range.start) / (plot.y_range.end - plot.y_range.start);
    return { x: canvas.left + box.left + fx * box.width, y: canvas.top + box.top + (1 - fy) * box.height };
  }

  window.hlDebug = { onSelect, selectIds, screenOf, state: () => ({ ...state, shown: shown.length, paints }) };

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
    // prefetch.js asked for the points before BokehJS loaded; ask again if that failed
    const early = window.hlPointsResponse ? window.hlPointsResponse.then(hl.parse).catch(() => null) : Promise.resolve(null);
    const [views, points] = await Promise.all([window.Bokeh.embed.embed_item(item, "map"),
      early.then((body) => body || hl.getJSON("/api/points"))]);
    performance.mark("hl:fetched"); // marks let benchmarks/webapp_browser.py split the load time
    all = { n: points.n };
    for (const [name, col] of Object.entries(points.columns)) all[name] = decode(col);
    performance.mark("hl:decoded");
    let plot = null, scatter = null, raster = null;
    for (const doc of window.Bokeh.documents) {
      source = doc.get_model_by_name("points") || source;
      plot = doc.get_model_by_name("map") || plot;
      scatter = doc.get_model_by_name("scatter") || scatter;
      raster = doc.get_model_by_name("raster") || raster;
    }
    const plotView = plot && views.find_one(plot);
    const scatterView = scatter && views.find_one(scatter);
    if (plotView && scatterView && raster && window.hlRaster) {
      // The scatter keeps its screen coordinates current (hit testing and hover use them)
      // but paints nothing: the raster image shows the points.
      scatterView._paint = function () { this.map_data(); };
      const size = scatter.glyph.size; // plots.MARKER_SIZE: a number or {value}
      view = { plot, plotView, raster, size: typeof size === "number" ? size : (size && size.value) || 7,
        ndarray: window.Bokeh.require("core/util/ndarray").ndarray };
      for (const model of [plot.x_range, plot.y_range]) model.change.connect(() => viewChanged());
      for (const prop of [plot.properties.inner_width, plot.properties.inner_height]) prop.change.connect(() => viewChanged());
    }
    rebuild();
    performance.mark("hl:filled");
    if (state.selectAll) selectIds(source.data.id, true);
    else if (state.q && !state.ids.length) search();
    document.body.dataset.ready = "1";
  }
  init().catch((err) => status("could not load the map: " + err.message));
})();
