// Small enhancements; every page works without this script.
(function () {
  "use strict";
  // Typed confirmations: a submit button stays disabled until the phrase
  // typed matches exactly. The server checks the phrase again.
  document.querySelectorAll("[data-confirm-phrase]").forEach(function (input) {
    var form = input.form;
    var button = form && form.querySelector("button[type=submit]");
    if (!button) return;
    var phrase = input.getAttribute("data-confirm-phrase");
    var sync = function () {
      var ok = input.value === phrase;
      button.disabled = !ok;
      input.classList.toggle("matches", ok);
    };
    input.addEventListener("input", sync);
    sync();
  });

  // Pages that show something in progress ([data-refresh]) update their
  // live parts ([data-live] with an id: the operation's outcome and steps,
  // the lock banner) in place every second, without a reload: the scroll
  // position, focus and any text selected stay. A part that is gone from
  // the new page (the lock banner once the operation ends) is removed.
  // Updates stop when the page no longer shows anything in progress.
  if (!document.querySelector("[data-refresh]") || !window.fetch || !window.DOMParser) return;
  var failures = 0;
  function update() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (resp.redirected) {
          // Signed out meanwhile: show the sign-in page as a whole.
          window.location.reload();
          return null;
        }
        if (!resp.ok) throw new Error("status " + resp.status);
        return resp.text();
      })
      .then(function (html) {
        if (html === null) return;
        failures = 0;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var next = doc.getElementById(el.id);
          if (!next) {
            el.remove();
          } else if (next.outerHTML !== el.outerHTML) {
            el.replaceWith(document.importNode(next, true));
          }
        });
        document.title = doc.title;
        if (doc.querySelector("[data-refresh]")) setTimeout(update, 1000);
      })
      .catch(function () {
        // The appliance may be busy or restarting: try again, less often.
        failures++;
        setTimeout(update, Math.min(1000 * (failures + 1), 10000));
      });
  }
  setTimeout(update, 1000);
})();
