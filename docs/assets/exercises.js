/* Self-check for the exercises (scripts/exercisesmd.py writes the markup).
 *
 * Numeric answers: the reader types one number or several, separated by commas (or spaces,
 * semicolons, line breaks; brackets are ignored), and each entry x is compared with the computed
 * answer a by PrairieLearn's rule |x - a| <= atol + rtol |a|. Numbers are compared as numbers,
 * never as strings: "0.50", ".5" and "5e-1" are the same answer.
 * Multiple choice: picking an option says at once whether it is the computed one.
 * Solved exercises are remembered in this browser (localStorage), nowhere else. No request is made.
 */
(function () {
  "use strict";

  var STORE = "verified-backprop:exercise:";
  var NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

  function remember(id) {
    try { window.localStorage.setItem(STORE + id, "solved"); } catch (e) { /* storage disabled: fine */ }
  }

  function remembered(id) {
    try { return window.localStorage.getItem(STORE + id) === "solved"; } catch (e) { return false; }
  }

  /* "1.5, -2; 3e-1" -> [1.5, -2, 0.3]; a fraction "1/3" is allowed; null if anything is not a number. */
  function parseNumbers(text) {
    var cleaned = text.replace(/[\u2212\u2012\u2013\u2014]/g, "-").replace(/[\[\]()]/g, " ").trim();
    if (!cleaned) return null;
    var words = cleaned.split(/[\s,;]+/).filter(function (w) { return w.length > 0; });
    var values = [];
    for (var i = 0; i < words.length; i++) {
      var word = words[i];
      var slash = word.indexOf("/");
      var value;
      if (slash > 0) {
        var top = word.slice(0, slash), bottom = word.slice(slash + 1);
        if (!NUMBER.test(top) || !NUMBER.test(bottom) || Number(bottom) === 0) return null;
        value = Number(top) / Number(bottom);
      } else {
        if (!NUMBER.test(word)) return null;
        value = Number(word);
      }
      if (!isFinite(value)) return null;
      values.push(value);
    }
    return values;
  }

  function close(x, a, rtol, atol) {
    return Math.abs(x - a) <= atol + rtol * Math.abs(a);
  }

  function say(feedback, correct, message) {
    feedback.textContent = message;
    feedback.classList.toggle("exercise-correct", correct === true);
    feedback.classList.toggle("exercise-wrong", correct === false);
  }

  function markSolved(exercise) {
    var badge = exercise && exercise.querySelector(".exercise-solved");
    if (badge) badge.hidden = false;
  }

  function checkPart(part, rtol, atol) {
    var input = part.querySelector("input");
    var feedback = part.querySelector(".exercise-feedback");
    var answer = JSON.parse(part.getAttribute("data-answer"));
    var values = parseNumbers(input.value);
    if (values === null) {
      say(feedback, null, "Type " + (answer.length === 1 ? "a number" : answer.length + " numbers") +
          " (a point for decimals, commas between numbers).");
      return false;
    }
    if (values.length !== answer.length) {
      say(feedback, false, "Not quite: " + answer.length + (answer.length === 1 ? " number is" : " numbers are") +
          " expected, you typed " + values.length + ".");
      return false;
    }
    var wrong = 0;
    for (var i = 0; i < answer.length; i++) {
      if (!close(values[i], answer[i], rtol, atol)) wrong++;
    }
    if (wrong === 0) {
      say(feedback, true, "Correct.");
      return true;
    }
    say(feedback, false, answer.length === 1 ? "Not quite." :
        "Not quite: " + wrong + " of " + answer.length + " entries are outside the tolerance.");
    return false;
  }

  function setUpNumeric(check) {
    var rtol = Number(check.getAttribute("data-rtol"));
    var atol = Number(check.getAttribute("data-atol"));
    var exercise = check.closest(".exercise");
    var parts = Array.prototype.slice.call(check.querySelectorAll(".exercise-part"));
    var solved = parts.map(function () { return false; });
    parts.forEach(function (part, index) {
      var input = part.querySelector("input");
      var run = function () {
        solved[index] = checkPart(part, rtol, atol);
        if (solved.every(Boolean)) {
          remember(check.getAttribute("data-exercise"));
          markSolved(exercise);
        }
      };
      part.querySelector("button").addEventListener("click", run);
      input.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { event.preventDefault(); run(); }
      });
    });
    check.hidden = false;
  }

  function setUpChoice(choice) {
    var id = choice.getAttribute("data-exercise");
    var right = Number(choice.getAttribute("data-answer"));
    var feedback = choice.querySelector(".exercise-feedback");
    var exercise = choice.closest(".exercise");
    var items = choice.querySelectorAll("ol > li");
    Array.prototype.forEach.call(items, function (item, index) {
      var label = document.createElement("label");
      var radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "choice-" + id;
      radio.value = String(index);
      label.appendChild(radio);
      while (item.firstChild) label.appendChild(item.firstChild);
      item.appendChild(label);
      radio.addEventListener("change", function () {
        if (index === right) {
          say(feedback, true, "Correct.");
          remember(id);
          markSolved(exercise);
        } else {
          say(feedback, false, "Not quite.");
        }
      });
    });
    choice.classList.add("exercise-choice-ready");
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll(".exercise-check[data-kind='numeric']"), function (check) {
      if (!check.dataset.ready) { check.dataset.ready = "1"; setUpNumeric(check); }
    });
    Array.prototype.forEach.call(document.querySelectorAll(".exercise-choice[data-kind='choice']"), function (choice) {
      if (!choice.dataset.ready) { choice.dataset.ready = "1"; setUpChoice(choice); }
    });
    Array.prototype.forEach.call(document.querySelectorAll(".exercise[data-exercise]"), function (exercise) {
      if (remembered(exercise.getAttribute("data-exercise"))) markSolved(exercise);
    });
  }

  /* Material's instant navigation swaps pages without reloading: it announces each page on document$. */
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(init);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
