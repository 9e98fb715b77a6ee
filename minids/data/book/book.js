// Draws every plotly figure of a book page, offline: each figure is a <div class="minids-plotly minids-fig-ID">
// and its data sits in the page's #minids-figures table. Widgets (ipywidgets' html-manager) render their saved
// outputs after the page has loaded, so new divs are watched for and drawn as they appear.
(function () {
  var table = document.getElementById("minids-figures");
  var figures = table ? JSON.parse(table.textContent) : {};
  function draw() {
    if (!window.Plotly) return;
    document.querySelectorAll(".minids-plotly:not(.minids-drawn)").forEach(function (el) {
      var id = Array.prototype.find.call(el.classList, function (c) { return c.indexOf("minids-fig-") === 0; });
      var fig = id && figures[id.slice("minids-fig-".length)];
      el.classList.add("minids-drawn");
      if (!fig) { el.textContent = "(figure missing from this page)"; return; }
      var config = Object.assign({responsive: true, displaylogo: false}, fig.config || {});
      window.Plotly.newPlot(el, fig.data || [], fig.layout || {}, config);
    });
  }
  draw();
  new MutationObserver(draw).observe(document.body, {childList: true, subtree: true});
})();
