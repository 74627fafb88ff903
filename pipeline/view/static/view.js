// trajforge view: image zoom (click an input image: fitted to the window in an overlay; click it
// again for actual pixels, scroll to pan; click outside or Escape closes).
(function () {
  var box = document.getElementById("zoom"), img = document.getElementById("zoom-img"), full = document.getElementById("zoom-full");
  if (!box) return;
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.classList && t.classList.contains("zoomable")) {
      img.src = t.getAttribute("data-full") || t.src; full.href = img.src; img.className = ""; box.hidden = false; ev.preventDefault();
    } else if (t === img) { img.classList.toggle("actual");  // fitted <-> actual pixels (scroll to pan)
    } else if (!box.hidden && t !== full) { box.hidden = true; }
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") box.hidden = true; });
})();
