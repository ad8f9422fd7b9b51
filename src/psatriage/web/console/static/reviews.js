// Keyboard shortcuts for the review queue: j / k select the next / previous suggestion,
// a accepts it, d dismisses it, c (or Enter) opens it to choose another category.
// Keys typed into a field, or with a modifier, are left alone.
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("li.review[data-review]"));
  if (!cards.length) {
    return;
  }
  var at = 0;

  function select(index) {
    cards[at].classList.remove("selected");
    at = Math.max(0, Math.min(cards.length - 1, index));
    cards[at].classList.add("selected");
    cards[at].focus({ preventScroll: true });
    cards[at].scrollIntoView({ block: "nearest" });
  }

  function press(key) {
    var target = cards[at].querySelector('[data-key="' + key + '"]');
    if (target && !target.disabled) {
      target.click();
    }
  }

  select(0);
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    if (event.target.closest && event.target.closest("input, select, textarea, button")) {
      return;
    }
    var actions = { j: function () { select(at + 1); }, k: function () { select(at - 1); },
      a: function () { press("a"); }, d: function () { press("d"); },
      c: function () { press("c"); }, Enter: function () { press("c"); } };
    var action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
})();
