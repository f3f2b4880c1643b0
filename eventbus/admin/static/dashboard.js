// Keeps the dashboard live: a job page that is not finished reloads itself; the queue table of the
// overview polls /dashboard/stats.json every 1.5 s.
(function () {
  "use strict";
  var refresh = document.querySelector("[data-refresh-ms]");
  if (refresh) setTimeout(function () { window.location.reload(); }, Number(refresh.dataset.refreshMs));
})();

(function () {
  "use strict";
  var table = document.querySelector("[data-stats-table]");
  if (!table) return;
  var FIELDS = ["waiting", "active", "delayed", "completed", "failed", "dead", "processed_last_minute"];
  var live = document.querySelector("[data-live]");

  function setCount(cell, value) {
    var target = cell.querySelector("a") || cell;
    if (target.textContent !== String(value)) {
      target.textContent = String(value);
      cell.classList.add("changed");
      setTimeout(function () { cell.classList.remove("changed"); }, 600);
    }
  }

  function setPaused(row, queue, paused) {
    var badge = row.querySelector("[data-field=paused] .badge");
    badge.textContent = paused ? "paused" : "running";
    badge.className = "badge " + (paused ? "paused" : "running");
    var form = row.querySelector(".actions form");
    var button = form && form.querySelector("button");
    if (!form || !button) return;
    var verb = paused ? "resume" : "pause";
    form.action = "/queues/" + encodeURIComponent(queue) + "/" + verb;
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("data-testid", verb + "-" + queue);
  }

  function apply(stats) {
    stats.queues.forEach(function (q) {
      var row = table.querySelector('tr[data-queue="' + CSS.escape(q.queue) + '"]');
      if (!row) return;  // a new queue appears on the next page load
      FIELDS.forEach(function (f) { setCount(row.querySelector('[data-field="' + f + '"]'), q[f]); });
      row.querySelector('[data-field="dead"]').classList.toggle("bad", q.dead > 0);
      setPaused(row, q.queue, q.paused);
    });
    var updated = document.querySelector("[data-updated]");
    if (updated) updated.textContent = new Date(stats.at_ms).toISOString().replace("T", " ").slice(0, 19);
    var workers = document.querySelector("[data-workers]");
    if (workers) workers.textContent = String(stats.workers);
  }

  function poll() {
    fetch("/dashboard/stats.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location = "/login?next=/"; throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (stats) { apply(stats); if (live) live.classList.remove("stale"); })
      .catch(function () { if (live) live.classList.add("stale"); })
      .finally(function () { setTimeout(poll, 1500); });
  }
  setTimeout(poll, 1500);
})();
