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
    var sync = function () { button.disabled = input.value !== phrase; };
    input.addEventListener("input", sync);
    sync();
  });
  // Pages that show something in progress refresh themselves.
  if (document.querySelector("[data-refresh]")) {
    setTimeout(function () { window.location.reload(); }, 2000);
  }
})();
