// The payment page follows its payment: it asks …/live every two seconds while the payment can
// still change, and when it did, swaps in the page's fresh main part (or, while the operator is
// typing in a form, says that it changed).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var say = document.getElementById("live-status");
  var section = document.getElementById("payment");
  if (!main || !section) { return; }
  var url = section.getAttribute("data-live-url");
  var stamp = section.getAttribute("data-stamp");

  function typing() {
    var inputs = main.querySelectorAll("input[type=text], input:not([type]), textarea");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== "" || inputs[i] === document.activeElement) { return true; }
    }
    return false;
  }

  function later(ms) { window.setTimeout(tick, ms); }

  function refresh(state) {
    if (typing()) {
      document.getElementById("changed").hidden = false;
      stamp = state.stamp;
      return Promise.resolve(state.live);
    }
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) { return answer.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("payment");
        if (!fresh) { return false; }
        var focused = document.activeElement && main.contains(document.activeElement);
        section.replaceWith(document.importNode(fresh, true));
        section = document.getElementById("payment");
        stamp = section.getAttribute("data-stamp");
        document.title = page.title;
        if (say) { say.textContent = "The payment is now " + state.status + "."; }
        if (focused) { main.focus(); }
        return section.getAttribute("data-live") === "yes";
      });
  }

  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (answer.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (state) { return state.stamp === stamp ? state.live : refresh(state); })
      .then(function (live) { if (live) { later(2000); } })
      .catch(function () { later(5000); });
  }

  later(2000);
})();
