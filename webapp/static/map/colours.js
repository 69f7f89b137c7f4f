// Colour by: one colour per point for the chosen column, and the legend. Which columns can
// colour the map and how (intent, cluster, ramp, split, annotated) comes from the page
// config (webapp/plots.py COLOR_BY).

import { $, cfg, state } from "./state.js";

export const GREY = "#bdbdbd";
const RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]; // viridis stops
const ANNOTATED = "#1f77b4", UNANNOTATED = "#ff7f0e";

// t in [0, 1] -> "#rrggbb" along the viridis ramp
export function ramp(t) {
  const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const a = parseInt(RAMP[i].slice(1), 16), b = parseInt(RAMP[i + 1].slice(1), 16);
  const ch = (s) => Math.round(((a >> s) & 255) * (1 - f) + ((b >> s) & 255) * f);
  return "#" + ((1 << 24) | (ch(16) << 16) | (ch(8) << 8) | ch(0)).toString(16).slice(1);
}

function kindOf(field) {
  const choice = (cfg.color_by || []).find((c) => c.value === field);
  return choice ? choice.kind : "intent";
}

// categorical columns: one colour per category, looked up by code
const byCode = (col, colorOf) => {
  const table = col.cats.map(colorOf);
  return (i) => (col.codes[i] < 0 ? GREY : table[col.codes[i]]);
};

// { legend: [[name, colour]...], color: (row of state.all) -> colour } for colour-by `field`
export function colorer(field) {
  const all = state.all, pal = cfg.palette, kind = kindOf(field);
  if (kind === "ramp") {
    const v = all[field];
    let lo = Infinity, hi = -Infinity; // a loop, not Math.min(...): 100k arguments overflow the stack
    for (let i = 0; i < v.length; i++) if (v[i] === v[i]) { lo = Math.min(lo, v[i]); hi = Math.max(hi, v[i]); }
    const legend = lo <= hi ? [[`low (${window.hl.fmt(lo)})`, ramp(0)], [`high (${window.hl.fmt(hi)})`, ramp(1)],
      ["no value", GREY]] : [["no value", GREY]];
    const steps = Array.from({ length: 64 }, (_, k) => ramp(k / 63)); // 64 shades: no per-point string building
    return { legend, color: (i) => (v[i] !== v[i] ? GREY : steps[Math.round(63 * (hi > lo ? (v[i] - lo) / (hi - lo) : 0.5))]) };
  }
  if (kind === "annotated") {
    return { legend: [["annotated", ANNOTATED], ["unannotated", UNANNOTATED]],
      color: (i) => (all.label.codes[i] < 0 ? UNANNOTATED : ANNOTATED) };
  }
  if (kind === "change") { // the last retrain: fixed / broken / changed among wrong answers; unchanged grey
    const colors = { fixed: "#2ca02c", broken: "#d62728", changed: "#ff7f0e" };
    return { legend: [["fixed", colors.fixed], ["broken", colors.broken], ["changed (still wrong)", colors.changed],
      ["unchanged", GREY]], color: byCode(all[field], (c) => colors[c] || GREY) };
  }
  if (kind === "split") {
    const colors = cfg.split_colors || {};
    return { legend: [...(cfg.splits || []).map((s) => [s, colors[s] || GREY]), ["none", GREY]],
      color: byCode(all[field], (u) => colors[u] || GREY) };
  }
  if (kind === "cluster") {
    const col = all[field];
    const seen = new Set();
    for (const c of col) if (c >= 0) seen.add(c); // NaN (none) and -1 (noise) are not >= 0
    const ids = [...seen].sort((a, b) => a - b);
    const legend = ids.slice(0, 20).map((c) => [`cluster ${c}`, pal[c % pal.length]]);
    legend.push(["noise / none", GREY]);
    return { legend, color: (i) => { const c = col[i]; return c >= 0 ? pal[c % pal.length] : GREY; } };
  }
  // intents (label / predicted_label): one colour per intent, fixed by the intent's position
  const index = new Map(cfg.labels.map((l, k) => [l, k]));
  const colorOf = (l) => pal[(index.has(l) ? index.get(l) : index.size) % pal.length];
  const legend = cfg.labels.map((l) => [l, colorOf(l)]);
  legend.push([field === "label" ? "unannotated" : "no prediction", GREY]);
  return { legend, color: byCode(all[field], colorOf) };
}

export function drawLegend(entries) {
  const el = $("legend");
  if (!el) return;
  window.hl.clear(el);
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
