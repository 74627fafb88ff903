// trajforge view: image zoom (click an input image: full size in an overlay, scroll to pan).
(function () {
  var box = document.getElementById("zoom"), img = document.getElementById("zoom-img"), full = document.getElementById("zoom-full");
  if (!box) return;
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.classList && t.classList.contains("zoomable")) {
      img.src = t.getAttribute("data-full") || t.src; full.href = img.src; box.hidden = false; ev.preventDefault();
    } else if (!box.hidden && t !== full) { box.hidden = true; }
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") box.hidden = true; });
})();
