// /taxonomy: embeds the overlap heatmap (a tapped cell lists its rows: webapp/taxonomy.py's
// CustomJS calls window.hlTaxonomy.onCell), fills the merge / rename form from a finding's
// card (a split card's group fills a split), previews the action (POST /api/taxonomy/preview), applies exactly what was previewed
// (POST /api/taxonomy/apply with expected_rows) and reverts a change (POST /api/taxonomy/revert,
// previewed by a first click). Utterance text only ever goes in with textContent.
(function () {
  "use strict";
  const hl = window.hl;
  const $ = (id) => document.getElementById(id);
  const mapUrl = (ids) => "/?ids=" + ids.join(",");

  // -- heatmap -------------------------------------------------------------------------------
  async function onCell(a, b) {
    const title = $("cell-title");
    const tbody = document.querySelector("#cell-rows tbody");
    const link = $("cell-map");
    hl.clear(tbody);
    try {
      const q = new URLSearchParams({ a, b });
      const body = await hl.getJSON("/api/taxonomy/cell?" + q.toString());
      const score = body.score === null || body.score === undefined ? "" : ` (overlap ${hl.fmt(body.score)})`;
      title.textContent = `${body.n} ${body.what}${score}`;
      for (const r of body.rows) {
        const tr = document.createElement("tr");
        tr.dataset.id = r.id;
        const td = hl.cell(tr, "");
        const a = document.createElement("a");
        a.href = mapUrl([r.id]);
        a.textContent = String(r.id);
        td.appendChild(a);
        hl.cell(tr, r.text, "text");
        hl.cell(tr, r.label === null ? "(unannotated)" : r.label);
        hl.cell(tr, r.intent);
        hl.cell(tr, r.decision);
        tbody.appendChild(tr);
      }
      link.hidden = !body.map_ids.length;
      link.href = mapUrl(body.map_ids);
    } catch (err) {
      title.textContent = err.message;
      link.hidden = true;
    }
  }
  window.hlTaxonomy = { onCell };

  // -- merge / rename --------------------------------------------------------------------------
  const box = $("preview-box");
  const outcome = $("outcome");
  let planned = null; // the body and plan of the last preview

  function kind() {
    const checked = document.querySelector('input[name="kind"]:checked');
    return checked ? checked.value : "merge";
  }

  function syncKind() {
    const k = kind();
    for (const el of document.querySelectorAll(".merge-only")) el.hidden = k !== "merge";
    for (const el of document.querySelectorAll(".split-only")) el.hidden = k !== "split";
    $("new-name").placeholder = k === "merge" ? "(optional — both take this new name)"
      : k === "split" ? "the new intent of the group's rows" : "the intent's new name";
  }

  function requestBody() {
    const body = { kind: kind(), a: $("intent-a").value };
    const name = $("new-name").value.trim();
    if (body.kind === "merge") body.b = $("intent-b").value;
    if (body.kind === "split") body.group = Number($("split-group").value);
    if (name) body.label = name;
    if ($("allow-clash").checked) body.allow_clash = true;
    return body;
  }

  function fail(message) {
    outcome.textContent = message;
    outcome.classList.add("failed");
  }

  function reset() {
    planned = null;
    box.hidden = true;
    $("apply").disabled = true;
  }

  async function preview() {
    reset();
    outcome.textContent = "";
    outcome.classList.remove("failed");
    const body = requestBody();
    try {
      const plan = await hl.postJSON("/api/taxonomy/preview", body);
      planned = { body, plan };
      const into = `${plan.target}${plan.new_intent ? " (new intent)" : ` (${plan.n_target} rows already)`}`;
      const skipped = plan.n_skipped ? ` ${plan.n_skipped} of the group's rows carry another label now and stay.` : "";
      box.querySelector(".preview-summary").textContent =
        `${plan.n_rows} row${plan.n_rows === 1 ? "" : "s"} will be labelled ${into}: ` +
        plan.sources.map((s) => `${s} ${plan.by_label[s].n}`).join(", ") + "." + skipped;
      const tbody = box.querySelector("tbody");
      hl.clear(tbody);
      for (const s of plan.sources) {
        const d = plan.by_label[s];
        const tr = document.createElement("tr");
        hl.cell(tr, s);
        hl.cell(tr, d.n);
        hl.cell(tr, d.n_decided);
        const td = hl.cell(tr, "", "text");
        for (const e of d.examples) {
          const div = document.createElement("div");
          div.textContent = `${e.id}: “${e.text}”` + (e.intent !== s ? ` (exported as ${e.intent || "unannotated"})` : "");
          td.appendChild(div);
        }
        tbody.appendChild(tr);
      }
      box.querySelector(".preview-map").href = mapUrl(plan.ids);
      box.hidden = false;
      $("apply").disabled = plan.n_rows === 0;
    } catch (err) {
      fail(err.message);
    }
  }

  function addChange(res) {
    const tbody = document.querySelector("#changes tbody");
    const none = tbody.querySelector("tr.none");
    if (none) none.remove();
    const tr = document.createElement("tr");
    tr.dataset.batch = res.batch;
    const [k, id] = res.batch.split(":");
    hl.cell(tr, `${k} ${id.slice(0, 8)}`);
    hl.cell(tr, res.n_rows);
    hl.cell(tr, res.target);
    hl.cell(tr, "just now");
    hl.cell(tr, "");
    const td = hl.cell(tr, "");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.revert = res.batch;
    button.textContent = "Revert";
    td.appendChild(button);
    tbody.insertBefore(tr, tbody.firstChild);
  }

  async function apply() {
    if (!planned) return;
    $("apply").disabled = true;
    outcome.textContent = "applying…";
    try {
      const res = await hl.postJSON("/api/taxonomy/apply", { ...planned.body, expected_rows: planned.plan.n_rows });
      reset();
      outcome.classList.remove("failed");
      outcome.textContent = `${res.n_rows} row${res.n_rows === 1 ? "" : "s"} now labelled ${res.target} ` +
        `(${res.kind} of ${res.sources.join(" + ")}); revert it under “Changes made”.`;
      document.body.dataset.applied = res.batch;
      addChange(res);
    } catch (err) {
      fail(err.message);
      $("apply").disabled = false;
    }
  }

  function fill(button) {
    const how = button.dataset.fill;
    const card = button.closest("li.finding");
    const k = how === "rename" || how === "split" ? how : "merge";
    document.querySelector(`input[name="kind"][value="${k}"]`).checked = true;
    syncKind();
    $("intent-a").value = button.dataset.from || card.dataset.a;
    $("intent-b").value = k === "merge" ? button.dataset.to || "" : "";
    if (k === "split") $("split-group").value = button.dataset.group;
    $("new-name").value = "";
    reset();
    $("action").scrollIntoView({ block: "start" });
    if (how === "merge") preview();
    else $("new-name").focus();
  }

  async function revert(button) {
    const batch = button.dataset.revert;
    const row = button.closest("tr");
    try {
      if (button.dataset.confirm !== "1") {
        const p = await hl.postJSON("/api/taxonomy/revert", { batch, preview: true });
        button.dataset.confirm = "1";
        button.textContent = `Confirm: restore ${p.n_rows} row${p.n_rows === 1 ? "" : "s"}` +
          (p.n_skipped ? ` (${p.n_skipped} decided since stay)` : "");
        return;
      }
      const res = await hl.postJSON("/api/taxonomy/revert", { batch });
      button.replaceWith(document.createTextNode("reverted"));
      outcome.classList.remove("failed");
      outcome.textContent = `${res.n_rows} row${res.n_rows === 1 ? "" : "s"} restored to their labels before the change.`;
      row.classList.add("reverted");
    } catch (err) {
      fail(err.message);
    }
  }

  for (const r of document.querySelectorAll('input[name="kind"]')) r.addEventListener("change", () => { syncKind(); reset(); });
  for (const id of ["intent-a", "intent-b", "new-name", "allow-clash"]) {
    const el = $(id);
    if (el) el.addEventListener("input", reset);
  }
  if ($("preview")) $("preview").addEventListener("click", preview);
  if ($("apply")) $("apply").addEventListener("click", apply);
  if ($("cancel")) $("cancel").addEventListener("click", reset);
  document.addEventListener("click", (ev) => {
    const fillButton = ev.target.closest("button[data-fill]");
    if (fillButton) fill(fillButton);
    const revertButton = ev.target.closest("button[data-revert]");
    if (revertButton) revert(revertButton);
  });
  syncKind();

  const item = hl.readJSON("taxonomy-heatmap");
  const ready = () => { document.body.dataset.ready = "1"; };
  if (item && window.Bokeh) window.Bokeh.embed.embed_item(item, "overlap").then(ready, ready);
  else ready();
})();
