// Loaded in the map page's <head>: starts points-worker.js at once, so the (large) payload
// downloads, parses and decodes on another thread while BokehJS loads; map.js (an ES module,
// run after BokehJS) takes the decoded columns from window.hlPoints. Where a module worker
// cannot start, hlPoints rejects and map.js fetches the payload itself.
window.hlPoints = new Promise((resolve, reject) => {
  const script = document.currentScript;
  const src = script && `${script.dataset.worker}?format=${encodeURIComponent(script.dataset.format || "")}`;
  let worker;
  try {
    worker = new Worker(src, { type: "module" });
  } catch (err) {
    reject(err);
    return;
  }
  worker.onmessage = (ev) => {
    worker.terminate();
    if (ev.data.error) reject(new Error(ev.data.error));
    else { window.hlPointsSizes = ev.data.sizes; resolve(ev.data.all); }
  };
  worker.onerror = (ev) => { worker.terminate(); reject(new Error(ev.message || "the points worker failed")); };
});
window.hlPoints.catch(() => {}); // map.js handles a failure; no unhandled-rejection noise before it runs
