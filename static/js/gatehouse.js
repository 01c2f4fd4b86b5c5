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

// Elevation banner: keeps "N minutes left" current without a reload. The server decides
// (the session ends on its clock); this only counts down from the seconds it rendered.
(function () {
  "use strict";

  var banner = document.getElementById("elevation-banner");
  if (!banner) { return; }
  var left = banner.querySelector(".elevation-left");
  var seconds = parseInt(banner.getAttribute("data-seconds-left"), 10);
  if (!left || isNaN(seconds)) { return; }
  var deadline = Date.now() + seconds * 1000;
  var timer;

  function update() {
    var remaining = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    if (remaining === 0) {
      window.clearInterval(timer);
      banner.classList.add("elevation-banner-ended");
      left.textContent = "time is up";
      var until = banner.querySelector(".elevation-until");
      if (until) { until.textContent = "— you have been signed out; the next page asks you to sign in again."; }
      var end = banner.querySelector(".elevation-end");
      if (end) { end.hidden = true; }
      var sep = banner.querySelector(".elevation-sep");
      if (sep) { sep.hidden = true; }
      return;
    }
    var minutes = Math.ceil(remaining / 60);
    var text = minutes + (minutes === 1 ? " minute" : " minutes") + " left";
    if (left.textContent !== text) { left.textContent = text; }
  }

  timer = window.setInterval(update, 1000);
  update();
})();
