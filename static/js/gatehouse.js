// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";

  function flash(message, kind) {
    var area = document.getElementById("flash-messages");
    if (!area) { return; }
    var div = document.createElement("div");
    div.className = "flash flash-" + (kind || "error");
    div.setAttribute("role", "alert");
    div.textContent = message;
    area.prepend(div);
  }

  // A request that never reached the server gets a visible explanation instead of silence.
  document.addEventListener("htmx:sendError", function () {
    flash("Gatehouse could not be reached. Check your connection and try again.");
  });
  document.addEventListener("htmx:timeout", function () {
    flash("Gatehouse is taking too long to answer. Try again in a moment.");
  });
})();
