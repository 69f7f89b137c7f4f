// The report page: embeds the Bokeh figures and lists a confusion-matrix cell's rows
// when it is clicked (plots.py's CustomJS calls window.hlReport.onCell).
(function () {
  "use strict";
  const hl = window.hl;
  const items = hl.readJSON("report-items") || {};
  const cfg = hl.readJSON("report-config") || {};

  async function onCell(given, predicted) {
    const title = document.getElementById("cell-title");
    const tbody = document.querySelector("#cell-rows tbody");
    hl.clear(tbody);
    const q = new URLSearchParams({ given, predicted, split: cfg.split, endpoint: cfg.endpoint });
    try {
      const body = await hl.getJSON("/api/confusion?" + q.toString());
      title.textContent = `${body.n} row${body.n === 1 ? "" : "s"} labelled ${given}, predicted ${predicted}`;
      for (const r of body.rows) {
        const tr = document.createElement("tr");
        hl.cell(tr, r.id);
        hl.cell(tr, r.text, "text");
        hl.cell(tr, r.intent);
        hl.cell(tr, r.predicted_label);
        hl.cell(tr, hl.pct(r.confidence));
        tbody.appendChild(tr);
      }
    } catch (err) {
      title.textContent = err.message;
    }
  }
  window.hlReport = { onCell };

  const jobs = Object.entries(items)
    .filter(([, item]) => item)
    .map(([id, item]) => window.Bokeh.embed.embed_item(item, id));
  Promise.all(jobs).then(() => { document.body.dataset.ready = "1"; });
})();
