// The map page: fills the Bokeh "points" source from /api/points (column arrays), colours
// and filters in the browser, and links the selection to the inspector. plots.py attaches
// a CustomJS to source.selected that calls window.hlDebug.onSelect(indices).
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
  let all = null; // column arrays from /api/points
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

  function saveURL() {
    const p = new URLSearchParams();
    if (state.color !== "label") p.set("color", state.color);
    for (const key of ["intent", "usage", "cluster", "q"]) if (state[key]) p.set(key, state[key]);
    if (state.ids.length && state.ids.length <= 500) p.set("ids", state.ids.join(","));
    const qs = p.toString();
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
      let lo = Infinity, hi = -Infinity; // a loop, not Math.min(...): 100k arguments overflow the stack
      for (const v of all[field]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      const legend = lo <= hi ? [[`low (${hl.fmt(lo)})`, ramp(0)], [`high (${hl.fmt(hi)})`, ramp(1)], ["no value", GREY]] : [["no value", GREY]];
      return { legend, color: (i) => (all[field][i] === null ? GREY : ramp(hi > lo ? (all[field][i] - lo) / (hi - lo) : 0.5)) };
    }
    if (field === "annotated") {
      return { legend: [["annotated", "#1f77b4"], ["unannotated", "#ff7f0e"]], color: (i) => (all.label[i] === null ? "#ff7f0e" : "#1f77b4") };
    }
    if (field === "usage") {
      return { legend: [...Object.entries(USAGE_COLORS), ["none", GREY]], color: (i) => USAGE_COLORS[all.usage[i]] || GREY };
    }
    if (field === "cluster_id") {
      const ids = [...new Set(all.cluster_id.filter((c) => c !== null && c >= 0))].sort((a, b) => a - b);
      const legend = ids.slice(0, 20).map((c) => [`cluster ${c}`, pal[c % pal.length]]);
      legend.push(["noise / none", GREY]);
      return { legend, color: (i) => { const c = all.cluster_id[i]; return c === null || c < 0 ? GREY : pal[c % pal.length]; } };
    }
    // label / predicted_label: one colour per intent, fixed by the intent's position
    const index = new Map(cfg.labels.map((l, k) => [l, k]));
    const colorOf = (l) => (l === null || l === undefined ? GREY : pal[(index.has(l) ? index.get(l) : index.size) % pal.length]);
    const legend = cfg.labels.map((l) => [l, colorOf(l)]);
    legend.push([field === "label" ? "unannotated" : "no prediction", GREY]);
    return { legend, color: (i) => colorOf(all[field][i]) };
  }

  function keep(i) {
    if (state.intent) {
      if (state.intent === "__none__" ? all.label[i] !== null : all.label[i] !== state.intent) return false;
    }
    if (state.usage) {
      if (state.usage === "__none__" ? all.usage[i] !== null : all.usage[i] !== state.usage) return false;
    }
    if (state.cluster !== "" && String(all.cluster_id[i]) !== state.cluster) return false;
    return all.x[i] !== null;
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

  function rebuild() {
    if (!all || !source) return;
    const c = colorer(state.color);
    shown = [];
    for (let i = 0; i < all.id.length; i++) if (keep(i)) shown.push(i);
    const data = { x: [], y: [], id: [], text: [], label: [], predicted_label: [], cluster: [], color: [], marker: [], line: [] };
    for (const i of shown) {
      const unannotated = all.label[i] === null;
      const color = c.color(i);
      data.x.push(all.x[i]);
      data.y.push(all.y[i]);
      data.id.push(all.id[i]);
      data.text.push(all.text[i]);
      data.label.push(unannotated ? "(unannotated)" : all.label[i]);
      data.predicted_label.push(all.predicted_label[i] === null ? "(none)" : all.predicted_label[i]);
      data.cluster.push(all.cluster_id[i] === null ? "" : String(all.cluster_id[i]));
      data.color.push(color);
      data.marker.push(unannotated ? "diamond" : "circle");
      data.line.push(unannotated ? "#222222" : color);
    }
    quiet = true;
    source.selected.indices = [];
    source.data = data;
    quiet = false;
    drawLegend(c.legend);
    status(`${shown.length} of ${all.id.length} shown`);
    selectIds(state.ids, false);
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
    if (quiet || !source) return;
    const ids = indices.map((k) => source.data.id[k]);
    onSelectIds(ids);
  }

  let request = 0;
  async function onSelectIds(ids) {
    state.ids = ids;
    saveURL();
    const count = $("sel-count");
    count.textContent = ids.length ? `${ids.length} selected${ids.length > MAX_INSPECT ? `, first ${MAX_INSPECT} shown` : ""}` : "";
    const tbody = document.querySelector("#inspector tbody");
    if (!ids.length) {
      hl.clear(tbody);
      return;
    }
    const mine = ++request;
    let body;
    try {
      body = await hl.getJSON("/api/utterances?ids=" + ids.slice(0, MAX_INSPECT).join(","));
    } catch (err) {
      if (mine === request) { hl.clear(tbody); count.textContent = err.message; }
      return;
    }
    if (mine !== request) return; // a newer selection won
    hl.clear(tbody);
    for (const r of body.rows) {
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
      tbody.appendChild(tr);
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

  window.hlDebug = { onSelect, selectIds, state: () => ({ ...state, shown: shown.length }) };

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
    const [, points] = await Promise.all([window.Bokeh.embed.embed_item(item, "map"), hl.getJSON("/api/points")]);
    all = points.columns;
    for (const doc of window.Bokeh.documents) {
      source = doc.get_model_by_name("points") || source;
    }
    rebuild();
    if (state.selectAll) selectIds(source.data.id, true);
    else if (state.q && !state.ids.length) search();
    document.body.dataset.ready = "1";
  }
  init().catch((err) => status("could not load the map: " + err.message));
})();
