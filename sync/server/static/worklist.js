// Refreshes the worklist's rows from /clinic/worklist.json every 30 s, without a reload.
// Served by the server itself (CSP script-src 'self'); builds the rows with textContent only.
(function () {
  "use strict";
  var body = document.getElementById("rows");
  var table = body && body.closest("table");
  if (!body || !table) return;
  var query = table.getAttribute("data-query") || "";

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function render(data) {
    var fresh = document.createDocumentFragment();
    data.rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "level-" + r.level + (r.breached ? " breached" : "");
      var link = document.createElement("a");
      link.className = "code";
      link.href = "/clinic/r/" + encodeURIComponent(r.kit_id) + "/" + encodeURIComponent(r.code);
      link.textContent = r.code;
      cell(tr, "").appendChild(link);
      var badge = document.createElement("span");
      badge.className = "badge " + r.level;
      badge.textContent = r.level_name;
      var what = cell(tr, "");
      what.appendChild(badge);
      if (r.flag) {
        var flag = document.createElement("span");
        flag.className = "badge emergency flag";
        flag.textContent = r.flag;
        what.appendChild(document.createTextNode(" "));
        what.appendChild(flag);
      }
      cell(tr, r.rules.join("; "), "why");
      cell(tr, r.age_band);
      cell(tr, r.language);
      cell(tr, r.booth + (r.event ? " · " + r.event : ""));
      cell(tr, r.since_visit);
      var due = cell(tr, "", "deadline");
      if (r.breached) {
        var late = document.createElement("strong");
        late.className = "late";
        late.textContent = "BREACHED ";
        due.appendChild(late);
      }
      due.appendChild(document.createTextNode(r.time_left));
      due.appendChild(document.createElement("br"));
      var when = document.createElement("small");
      when.textContent = r.deadline_shown;
      due.appendChild(when);
      cell(tr, r.booking_shown ? "Booked call " + r.booking_shown
        : r.callback_shown ? "Call-back " + r.callback_shown : "none");
      cell(tr, r.phone || "not shared");
      cell(tr, String(r.attempts) + (r.last_attempt ? " (" + r.last_attempt.replace("_", " ") + ")" : ""));
      fresh.appendChild(tr);
    });
    if (!data.rows.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, "No referral needs contact.", "empty");
      td.colSpan = 11;
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
    document.getElementById("count").textContent = String(data.total);
    document.getElementById("breached-count").textContent = data.breached
      ? String(data.breached) + " breached"
      : "";
    document.getElementById("updated").textContent = data.now;
  }

  function refresh() {
    fetch("/clinic/worklist.json" + (query ? "?" + query : ""), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (res) {
        if (res.status === 401) {
          window.location.href = "/clinic/signin";
          return null;
        }
        return res.ok ? res.json() : null;
      })
      .then(function (data) {
        if (data) render(data);
      })
      .catch(function () {});
  }

  window.setInterval(refresh, 30000);
})();
