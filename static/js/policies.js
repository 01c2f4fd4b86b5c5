// Policies page: drag and drop reordering and the value picker. The page works without
// this file (up/down buttons, typed values); CSP allows no inline scripts, hence a file.
(function () {
  "use strict";

  var dragged = null;
  var before = null; // the order when the drag started, to skip no-op drops

  function rows(tbody) {
    return Array.prototype.slice.call(tbody.querySelectorAll("tr[data-policy-id]"));
  }

  function order(tbody) {
    return rows(tbody).map(function (row) { return row.getAttribute("data-policy-id"); }).join(",");
  }

  function prepare(root) {
    var tbody = (root && root.querySelector) ? (root.id === "policy-rows" ? root : root.querySelector("#policy-rows")) : null;
    if (tbody) { tbody.classList.add("dnd-ready"); }
  }

  // A row becomes draggable only while the pointer is down on its handle, so text in
  // the rows stays selectable and buttons stay clickable.
  document.addEventListener("pointerdown", function (event) {
    var handle = event.target.closest && event.target.closest("#policy-rows .drag-handle");
    if (handle) { handle.closest("tr").setAttribute("draggable", "true"); }
  });
  document.addEventListener("pointerup", function () {
    if (!dragged) {
      document.querySelectorAll("#policy-rows tr[draggable]").forEach(function (row) { row.removeAttribute("draggable"); });
    }
  });

  document.addEventListener("dragstart", function (event) {
    var row = event.target.closest && event.target.closest("#policy-rows tr[data-policy-id]");
    if (!row || row.getAttribute("draggable") !== "true") { return; }
    dragged = row;
    before = order(row.parentNode);
    row.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", row.getAttribute("data-policy-id"));
  });

  document.addEventListener("dragover", function (event) {
    if (!dragged) { return; }
    var row = event.target.closest && event.target.closest("#policy-rows tr");
    if (!row || row.parentNode !== dragged.parentNode) { return; }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    if (row === dragged) { return; }
    var box = row.getBoundingClientRect();
    var after = event.clientY > box.top + box.height / 2;
    row.parentNode.insertBefore(dragged, after ? row.nextSibling : row);
  });

  document.addEventListener("drop", function (event) {
    if (dragged) { event.preventDefault(); }
  });

  document.addEventListener("dragend", function () {
    if (!dragged) { return; }
    var row = dragged;
    var tbody = row.parentNode;
    dragged = null;
    row.classList.remove("dragging");
    row.removeAttribute("draggable");
    var now = order(tbody);
    if (now === before) { return; }
    rows(tbody).forEach(function (r, i) {
      var index = r.querySelector(".policy-index");
      if (index) { index.textContent = String(i + 1); }
    });
    // htmx.ajax with the tbody as source: the CSRF header comes from <body hx-headers>.
    htmx.ajax("POST", tbody.getAttribute("data-reorder-url"), {
      source: tbody, target: "#policy-table", swap: "outerHTML", values: { order: now }
    });
  });

  // The value picker: choosing a value adds it to the values field (once) and re-checks it.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select.classList || !select.classList.contains("policy-value-picker") || !select.value) { return; }
    var field = document.getElementById(select.getAttribute("data-values-field"));
    if (!field) { return; }
    var current = field.value.split(/\r?\n/).map(function (v) { return v.trim(); }).filter(Boolean);
    if (current.indexOf(select.value) < 0) {
      current.push(select.value);
      field.value = current.join("\n");
    }
    select.value = "";
    htmx.trigger(field, "policy-values-picked");
  });

  document.addEventListener("htmx:load", function (event) { prepare(event.target); });
  document.addEventListener("DOMContentLoaded", function () { prepare(document); });
})();
