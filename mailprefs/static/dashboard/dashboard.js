/* The dashboard's only script: live progress (polling a small JSON endpoint) and a
   confirmation before destructive buttons. The pages work without it; progress is then
   simply what it was when the page loaded. No library, nothing from the internet. */
(function () {
  "use strict";
  var PARTS = ["sent", "blocked", "failed", "cancelled", "pending"];
  var INTERVAL = 2000;
  var MAX_ERRORS = 5;
  var MAX_POLLS = 1800; // one hour at 2 s: then reload to go on watching
  var SVG = "http://www.w3.org/2000/svg";
  var MAX_BAR = 30; // as metrics.MAX_BAR

  function setText(root, field, value) {
    var nodes = root.querySelectorAll('[data-field="' + field + '"]');
    for (var i = 0; i < nodes.length; i++) { nodes[i].textContent = String(value); }
  }

  function setBar(root, percent) {
    var bars = root.querySelectorAll("svg.bar");
    for (var b = 0; b < bars.length; b++) {
      var x = 0;
      for (var i = 0; i < PARTS.length; i++) {
        var rect = bars[b].querySelector('[data-part="' + PARTS[i] + '"]');
        var width = percent[PARTS[i]] || 0;
        if (rect) { rect.setAttribute("x", x); rect.setAttribute("width", width); }
        x += width;
      }
    }
  }

  function setStatus(root, status) {
    var nodes = root.querySelectorAll('[data-field="status"]');
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = status;
      nodes[i].className = "status status-" + status;
    }
  }

  function svgElement(name, attributes, text) {
    var node = document.createElementNS(SVG, name);
    for (var key in attributes) { node.setAttribute(key, attributes[key]); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function drawChart(figure, series) {
    var svg = figure.querySelector("svg");
    var box = svg.viewBox.baseVal;
    var width = box.width, height = box.height, plot = height - 20;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.appendChild(svgElement("line", { "class": "axis", x1: 0, y1: plot, x2: width, y2: plot }));
    var points = series.points || [];
    if (!points.length) {
      svg.appendChild(svgElement("text", { x: width / 2, y: plot / 2, "text-anchor": "middle" }, "nothing sent yet"));
      return;
    }
    var top = Math.max(series.max || 0, 1), slot = width / points.length;
    for (var i = 0; i < points.length; i++) {
      var h = plot * points[i][1] / top;
      var w = Math.min(Math.max(slot * 0.8, 0.5), MAX_BAR);
      var rect = svgElement("rect", { "class": "sent", x: i * slot + (slot - w) / 2, y: plot - h,
                                      width: w, height: h });
      rect.appendChild(svgElement("title", {}, points[i][0] + ": " + points[i][1]));
      svg.appendChild(rect);
    }
    svg.appendChild(svgElement("text", { x: 0, y: height - 4 }, points[0][0].slice(11, 16)));
    svg.appendChild(svgElement("text", { x: width, y: height - 4, "text-anchor": "end" },
                               points[points.length - 1][0].slice(11, 16)));
    svg.appendChild(svgElement("text", { x: width, y: 12, "text-anchor": "end" }, "max " + top));
  }

  function setReasons(root, blocked, words) {
    words = words || {};
    var table = root.querySelector('table[data-field="blocked"] tbody');
    if (!table) { return; }
    while (table.firstChild) { table.removeChild(table.firstChild); }
    var reasons = Object.keys(blocked).sort();
    if (!reasons.length) {
      var empty = document.createElement("tr"), cell = document.createElement("td");
      cell.colSpan = 2; cell.className = "note"; cell.textContent = "none";
      empty.appendChild(cell); table.appendChild(empty);
    }
    for (var i = 0; i < reasons.length; i++) {
      var row = document.createElement("tr"), th = document.createElement("th"), td = document.createElement("td");
      th.scope = "row"; th.textContent = words[reasons[i]] || reasons[i]; td.textContent = String(blocked[reasons[i]]);
      row.appendChild(th); row.appendChild(td); table.appendChild(row);
    }
  }

  // A campaign page follows its campaign's status: buttons the new status does not
  // allow go away (no "Pause" on a sent campaign), "Next run" only while scheduled, the
  // audience section only before sending. No reload: the page keeps what it shows.
  function setControls(status, allowed) {
    var forms = document.querySelectorAll("[data-controls] form[data-action]");
    var shown = 0;
    for (var i = 0; i < forms.length; i++) {
      var keep = allowed.indexOf(forms[i].getAttribute("data-action")) !== -1;
      forms[i].hidden = !keep;
      if (keep) { shown += 1; }
    }
    var sections = document.querySelectorAll("[data-controls]");
    for (var j = 0; j < sections.length; j++) { sections[j].hidden = shown === 0; }
    var label = document.querySelector('[data-field="send_label"]');
    if (label) { label.textContent = status === "scheduled" ? "Next run" : "Send at"; }
    var only = document.querySelectorAll("[data-while]");
    for (var k = 0; k < only.length; k++) {
      only[k].hidden = only[k].getAttribute("data-while").split(" ").indexOf(status) === -1;
    }
  }

  function apply(root, data) {
    setStatus(root, data.status);
    setBar(root, data.percent);
    setText(root, "planned", data.stats.planned);
    setText(root, "sent", data.stats.sent);
    setText(root, "failed", data.stats.failed);
    setText(root, "pending", data.stats.pending);
    setText(root, "cancelled", data.stats.cancelled);
    setText(root, "blocked_total", data.blocked_total);
    setText(root, "percent_done", data.percent.done + "%");
    root.setAttribute("data-final", data.final ? "true" : "false");
    setReasons(root, data.stats.blocked, data.reason_words);
    if (data.controls) { setControls(data.status, data.controls); }
    if (data.series) {
      setText(root, "unit", data.series.unit);
      var figure = root.querySelector("[data-chart]");
      if (figure) { drawChart(figure, data.series); }
    }
  }

  function poll(url, onData, isDone) {
    var errors = 0, polls = 0;
    function tick() {
      if (isDone() || errors >= MAX_ERRORS || polls >= MAX_POLLS) { return; }
      polls += 1;
      fetch(url(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) { errors = 0; onData(data); })
        .catch(function () { errors += 1; })
        .then(function () { window.setTimeout(tick, INTERVAL); });
    }
    window.setTimeout(tick, INTERVAL);
  }

  function watchCampaign(section) {
    var url = section.getAttribute("data-progress");
    poll(function () { return url; },
         function (data) { apply(section, data); },
         function () { return section.getAttribute("data-final") === "true"; });
  }

  function watchList(table) {
    var base = table.getAttribute("data-poll-list");
    function open() {
      return Array.prototype.filter.call(table.querySelectorAll("tr[data-campaign]"), function (row) {
        return row.getAttribute("data-final") !== "true";
      });
    }
    poll(function () {
      return base + "?" + open().map(function (row) {
        return "id=" + encodeURIComponent(row.getAttribute("data-campaign"));
      }).join("&");
    }, function (data) {
      open().forEach(function (row) {
        var item = data[row.getAttribute("data-campaign")];
        if (item) { apply(row, item); }
      });
    }, function () { return open().length === 0; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var sections = document.querySelectorAll("[data-progress]");
    for (var i = 0; i < sections.length; i++) { watchCampaign(sections[i]); }
    var lists = document.querySelectorAll("table[data-poll-list]");
    for (var j = 0; j < lists.length; j++) { watchList(lists[j]); }
    document.addEventListener("submit", function (event) {
      var button = event.submitter || event.target.querySelector("[data-confirm]");
      var question = button && button.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { event.preventDefault(); }
    });
  });
})();
