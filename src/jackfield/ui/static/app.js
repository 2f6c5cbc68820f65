// Hand-written script of the Jackfield admin UI (the Content-Security-Policy allows no
// inline script). A form with data-confirm asks before it submits: actions that cannot
// be undone (discarding a dead letter) or that act on many messages at once.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
