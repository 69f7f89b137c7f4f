// Loaded in the map page's <head>: asks for /api/points at once, so the (large) payload
// downloads while BokehJS loads and parses; map.js (an ES module, run after BokehJS) picks the response up.
window.hlPointsResponse = fetch("/api/points", { headers: { Accept: "application/json" } });
