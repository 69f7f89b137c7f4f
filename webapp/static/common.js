// Helpers shared by every page. Utterance text is data: it is only ever put into the
// page with textContent, never innerHTML.
(function () {
  "use strict";

  async function parse(response) {
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) {
      const err = new Error(body.error || response.statusText);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(parse);
  }

  function postJSON(url, data) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(data),
    }).then(parse);
  }

  function cell(tr, value, className) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "" : Number(value).toFixed(digits === undefined ? 2 : digits);
  }

  function pct(value) {
    return value === null || value === undefined ? "" : Math.round(100 * value) + "%";
  }

  function readJSON(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  window.hl = { parse, getJSON, postJSON, cell, fmt, pct, readJSON, clear };
})();
