// The /compare page (embeds the per-intent figure) and the retrain button of /report
// (templates/_retrain.html: POST /api/retrain, then the result with links to /compare and the map).
// _retrain.html loads this file inside the page, before base.html's common.js: start once the
// document (and so every script) is in.
function hlCompare() {
  "use strict";
  const hl = window.hl;
  const pts = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + (100 * v).toFixed(1));
  const acc = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));

  const items = hl.readJSON("compare-items");
  if (items && window.Bokeh) {
    const jobs = Object.entries(items).filter(([, item]) => item)
      .map(([id, item]) => window.Bokeh.embed.embed_item(item, id));
    Promise.all(jobs).then(() => { document.body.dataset.ready = "1"; });
  }
  for (const id of ["pick-a", "pick-b"]) { // a new pick compares at once
    const sel = document.getElementById(id);
    if (sel) sel.addEventListener("change", () => sel.form.submit());
  }

  const button = document.getElementById("retrain-button");
  if (!button) return;
  const status = document.getElementById("retrain-status");
  const result = document.getElementById("retrain-result");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Retraining…";
    try {
      const r = await hl.postJSON("/api/retrain", {});
      status.textContent = r.new ? `Version ${r.version_after} trained.` : `Version ${r.version_after} (already trained).`;
      hl.clear(result);
      result.append(`${r.endpoint_before || "–"} → ${r.endpoint_after}: accuracy ${acc(r.accuracy_before)} → `
        + `${acc(r.accuracy_after)} (95% CI of the change ${pts(r.delta_low)} to ${pts(r.delta_high)} pts, `
        + `validation + testing, corrected labels); ${r.n_changed} answers changed. `);
      if (r.endpoint_before) {
        const q = new URLSearchParams({ a: r.endpoint_before, b: r.endpoint_after });
        const link = document.createElement("a");
        link.href = "/compare?" + q.toString();
        link.id = "retrain-compare";
        link.textContent = "Compare the two versions";
        const map = document.createElement("a");
        map.href = "/?color=model_change";
        map.id = "retrain-map";
        map.textContent = "see the changes on the map";
        result.append(link, " · ", map);
      }
      result.hidden = false;
    } catch (err) {
      status.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", hlCompare);
else hlCompare();
