// ICA dashboard: the only script (CSP script-src 'self'). It submits the
// single-use link's form at once, and re-filters when a pipeline is chosen.
document.addEventListener("DOMContentLoaded", function () {
  var link = document.getElementById("continue");
  if (link) {
    link.submit();
    return;
  }
  var sel = document.getElementById("pipeline");
  if (sel && sel.form) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  }
});
