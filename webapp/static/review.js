// Review pages (/issues and /queue): buttons and keyboard shortcuts post decisions to
// /api/annotations; the card shows the outcome and focus moves to the next one. On /queue a
// card without a pre-selected intent (a likely out-of-scope row) waits for the user's choice.
(function () {
  "use strict";
  const hl = window.hl;
  const list = document.getElementById("review");
  if (!list) return;
  const kind = list.dataset.kind;
  const cards = Array.from(list.querySelectorAll("li.card"));
  let current = 0;

  function focusCard(i) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, k) => c.classList.toggle("current", k === current));
    cards[current].focus({ preventScroll: true });
    cards[current].scrollIntoView({ block: "nearest" });
  }

  function updateProgress(delta) {
    const text = document.getElementById("progress-text");
    if (!text) return;
    const done = Number(text.dataset.done) + delta, total = Number(text.dataset.total);
    text.dataset.done = done;
    text.textContent = `${done} of ${total} reviewed`;
    const bar = document.getElementById("progress-bar");
    if (bar && total) bar.style.width = (100 * done / total).toFixed(1) + "%";
  }

  async function decide(card, action) {
    const body = { id: Number(card.dataset.id), action };
    const outcome = card.querySelector(".outcome");
    if (action === "relabel") {
      body.label = card.querySelector("select.relabel").value;
      if (!body.label) { // nothing pre-selected (a likely out-of-scope row): the user chooses
        outcome.textContent = "choose an intent first (or o: out of scope)";
        card.classList.add("failed");
        return;
      }
    }
    const wasDecided = card.classList.contains("decided");
    outcome.textContent = "saving…";
    try {
      const row = await hl.postJSON("/api/annotations", body);
      outcome.textContent = action === "skip" ? "skipped" : action === "out_of_scope" ? "out of scope"
        : `${action}: ${row.effective_label}`;
      card.classList.remove("failed");
      card.classList.add("decided");
      card.dataset.decision = action;
      if (!wasDecided) updateProgress(1);
      focusCard(cards.indexOf(card) + 1);
    } catch (err) {
      outcome.textContent = err.message;
      card.classList.add("failed");
    }
  }

  list.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest("li.card");
    focusCard(cards.indexOf(card));
    decide(card, button.dataset.action);
  });
  list.addEventListener("focusin", (ev) => {
    const card = ev.target.closest("li.card");
    if (card && cards.indexOf(card) !== current) {
      current = cards.indexOf(card);
      cards.forEach((c, k) => c.classList.toggle("current", k === current));
    }
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !cards.length) return;
    const card = cards[current];
    const select = card.querySelector("select.relabel");
    const inSelect = ev.target === select;
    if (ev.target.tagName === "INPUT") return;
    const key = ev.key;
    if (key === "Enter" && (inSelect || kind === "queue")) {
      ev.preventDefault();
      decide(card, "relabel");
      return;
    }
    if (key === "Escape" && inSelect) { card.focus(); return; }
    if (inSelect) return; // let the select handle arrows and letters
    if (key === "j" || key === "ArrowDown") { ev.preventDefault(); focusCard(current + 1); }
    else if (key === "k" || key === "ArrowUp") { ev.preventDefault(); focusCard(current - 1); }
    else if (key === "s") decide(card, "skip");
    else if (kind === "issues" && key === "a" && card.dataset.suggested) decide(card, "accept");
    else if (kind === "issues" && key === "c") decide(card, "keep");
    else if (kind === "issues" && key === "l") { ev.preventDefault(); select.focus(); }
    else if (kind === "queue" && key === "o") decide(card, "out_of_scope");
    else if (kind === "queue" && /^[1-9]$/.test(key)) {
      const options = Array.from(select.options).filter((o) => o.value); // not the "choose" placeholder
      if (Number(key) > options.length) return;
      select.value = options[Number(key) - 1].value;
      decide(card, "relabel");
    }
  });

  focusCard(0);
  document.body.dataset.ready = "1";
})();
