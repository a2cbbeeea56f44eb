// The "Pattern detections" page: follows the Airflow UI's theme and reloads the view while
// the stream runs. All figures are rendered on the server (the same HTML as `patternflow report`).
(function () {
  "use strict";
  var REFRESH_MS = __REFRESH_MS__;
  var IDLE_MS = 30000;
  var root = document.documentElement;

  // The Airflow UI embeds this page in a same-origin iframe and keeps its colour mode as the
  // class "light" or "dark" on its <html>: copy it, and its font, and follow changes. Opened on
  // its own, the page follows the system setting (prefers-color-scheme in the stylesheet).
  function followTheme() {
    var parentRoot;
    try {
      if (window.parent === window) return;
      parentRoot = window.parent.document.documentElement;
    } catch (e) {
      return; // another origin: keep the system setting
    }
    var apply = function () {
      root.classList.toggle("dark", parentRoot.classList.contains("dark"));
      root.classList.toggle("light", parentRoot.classList.contains("light"));
      var font = window.getComputedStyle(window.parent.document.body).fontFamily;
      if (font) root.style.setProperty("--pf-font", font);
    };
    apply();
    new MutationObserver(apply).observe(parentRoot, { attributes: true, attributeFilter: ["class", "style"] });
  }

  var view = document.getElementById("view");
  var note = document.getElementById("refresh");

  function schedule(ms) {
    window.setTimeout(load, ms);
  }

  function load() {
    fetch("api/stream/html", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          view.innerHTML = '<p class="pf-error">Not signed in to Airflow: open this page from the Airflow UI.</p>';
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        var finished = response.headers.get("X-Stream-Finished") === "true";
        return response.text().then(function (html) {
          var open = view.querySelector("details[open]") !== null;
          view.innerHTML = html;
          if (open) view.querySelector("details").setAttribute("open", "");
          note.textContent = finished
            ? "The stream is finished; looking for a new one every " + IDLE_MS / 1000 + " s."
            : "Refreshing every " + REFRESH_MS / 1000 + " s while the stream runs.";
          schedule(finished ? IDLE_MS : REFRESH_MS);
        });
      })
      .catch(function (error) {
        note.innerHTML = '<span class="pf-error">Cannot load the stream (' + String(error.message).replace(/[<&]/g, "") + "); retrying.</span>";
        schedule(REFRESH_MS * 2);
      });
  }

  followTheme();
  load();
})();
