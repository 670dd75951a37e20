// The dashboard's live part: every 5 s, the node and its activities from /dashboard/data
// (same origin: the session cookie goes along). Values become text nodes, never markup.
"use strict";
(function () {
  var REFRESH_MS = 5000;
  var rows = document.getElementById("activity-rows");
  if (!rows) { return; }

  function span(text, title, cls) {
    var s = document.createElement("span");
    s.textContent = text;
    if (title) { s.title = title; }
    if (cls) { s.className = cls; }
    return s;
  }
  function clip(text, limit) {
    text = text === null || text === undefined ? "" : String(text);
    return text.length <= limit ? text : text.slice(0, limit - 1) + "\u2026";
  }
  function id(text) { return span(clip(text, 16), clip(text, 200), "id"); }
  function num(value, digits) { return typeof value === "number" ? value.toFixed(digits) : ""; }
  function row(a) {
    var state = /^[a-z_]+$/.test(a.state) ? "state " + a.state : "state";
    var cells = [a.side, id(a.activity_id), id(a.agreement_id), id(a.peer_id), span(a.state, null, state),
                 num(a.cpu_s, 1), num(a.mem_gib, 3), num(a.elapsed_s, 1), clip(a.reason, 120)];
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c; }
      tr.appendChild(td);
    });
    return tr;
  }
  function say(text) {
    var el = document.getElementById("updated");
    if (el) { el.textContent = text; }
  }
  function show(data) {
    var fresh = document.createDocumentFragment();
    data.activities.forEach(function (a) { fresh.appendChild(row(a)); });
    if (!data.activities.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 9; td.className = "empty"; td.textContent = "no activity yet";
      tr.appendChild(td); fresh.appendChild(tr);
    }
    rows.replaceChildren(fresh);
    var running = document.getElementById("running-count");
    if (running) { running.textContent = String(data.activities.filter(function (a) { return a.running; }).length); }
    var reach = document.getElementById("reachability");
    if (reach) { reach.textContent = data.node.reachability || "unknown"; }
    var peers = document.getElementById("peers");
    if (peers) { peers.textContent = data.node.connected + " connected, " + data.node.known + " known"; }
    say(new Date(data.generated_at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC");
  }
  function refresh() {
    fetch("/dashboard/data", { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
      if (resp.status === 401) { say("(session ended: run `yagna dashboard` for a new link)"); return null; }
      if (!resp.ok) { say("(the node answered HTTP " + resp.status + ")"); return null; }
      return resp.json();
    }).then(function (data) { if (data) { show(data); } }, function () { say("(the node is not answering)"); });
  }
  setInterval(refresh, REFRESH_MS);
})();
