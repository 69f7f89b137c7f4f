// /discover: from a group of out-of-scope candidates, name a new intent for its rows (or the
// rows ticked) or mark them out_of_scope — one POST to /api/annotations/batch, stored in one
// transaction like every other decision.
(function () {
  "use strict";
  const hl = window.hl;
  const list = document.getElementById("groups");
  const known = new Set(hl.readJSON("known-labels") || []);
  const datalist = document.getElementById("intent-names");

  function targetIds(group) {
    const picked = Array.from(group.querySelectorAll("input.pick:checked"), (el) => Number(el.value));
    return picked.length ? picked : JSON.parse(group.dataset.ids || "[]");
  }

  async function act(group, action) {
    const outcome = group.querySelector(".outcome");
    const ids = targetIds(group);
    const body = { ids, action: action === "name" ? "relabel" : "out_of_scope" };
    if (action === "name") {
      const name = group.querySelector("input.intent-name").value.trim();
      if (!name) {
        outcome.textContent = "type the intent's name first";
        group.classList.add("failed");
        return;
      }
      body.label = name;
      if (!known.has(name)) body.new_intent = true; // an existing intent's name is a plain relabel
      if (group.querySelector("input.allow-clash").checked) body.allow_clash = true;
    }
    outcome.textContent = "saving…";
    try {
      const res = await hl.postJSON("/api/annotations/batch", body);
      const label = res.effective_label;
      outcome.textContent = `${res.n} row${res.n === 1 ? "" : "s"} labelled ${label}`;
      group.classList.remove("failed");
      group.classList.add("decided");
      group.dataset.decision = label;
      if (!known.has(label)) {
        known.add(label);
        if (datalist) {
          const opt = document.createElement("option");
          opt.value = label;
          datalist.appendChild(opt);
        }
      }
      for (const id of ids) {
        const cell = group.querySelector(`tr[data-id="${id}"] td:last-child`);
        if (cell) cell.textContent = body.action;
      }
    } catch (err) {
      outcome.textContent = err.message;
      group.classList.add("failed");
    }
  }

  if (list) {
    list.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (button) act(button.closest("li.group"), button.dataset.action);
    });
    list.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target.classList.contains("intent-name")) {
        ev.preventDefault();
        act(ev.target.closest("li.group"), "name");
      }
    });
  }
  document.body.dataset.ready = "1";
})();
