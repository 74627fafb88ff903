// trajforge view, list page: loads the index in chunks (script tags, so it works from disk too),
// shows the first page as soon as the first chunk arrives, filters and searches in the browser.
(function () {
  var META = window.TF_LIST, rows = [], loaded = 0, page = 0, PAGE = META.page_size;
  var $ = function (id) { return document.getElementById(id); };
  var F = ["id", "task", "status", "category", "turns", "calls", "tools", "outcome", "question", "stage"];
  function load(n) {
    var s = document.createElement("script");
    s.src = META.root + "data/list-" + String(n).padStart(4, "0") + ".js";
    s.onerror = function () { $("summary").textContent = "could not load " + s.src; };
    document.head.appendChild(s);
  }
  window.tfListChunk = function (n, data) {
    for (var i = 0; i < data.length; i++) rows.push(data[i]);
    loaded++;
    render();
    if (loaded < META.chunks) load(loaded);
  };
  function matches(r) {
    var q = $("f-q").value.trim().toLowerCase(), o = $("f-outcome").value, s = $("f-status").value,
        c = $("f-category").value, t = $("f-tool").value, lo = parseInt($("f-tmin").value, 10), hi = parseInt($("f-tmax").value, 10);
    if (q && r[8].toLowerCase().indexOf(q) < 0 && r[0].indexOf(q) < 0) return false;
    if (o && !(o === "dropped" ? r[7].indexOf("dropped") === 0 : r[7] === o)) return false;
    if (s && r[2] !== s) return false;
    if (c && r[3] !== c) return false;
    if (t && (" " + r[6] + " ").indexOf(" " + t + " ") < 0) return false;
    if (!isNaN(lo) && r[4] < lo) return false;
    if (!isNaN(hi) && r[4] > hi) return false;
    return true;
  }
  function cell(tr, text, cls, href) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else td.textContent = text;
    tr.appendChild(td);
  }
  function render() {
    var hits = rows.filter(matches), pages = Math.max(1, Math.ceil(hits.length / PAGE));
    if (page >= pages) page = pages - 1;
    var body = $("rows"), frag = document.createDocumentFragment();
    hits.slice(page * PAGE, page * PAGE + PAGE).forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "row " + (r[7] === "kept" ? "kept" : r[7].indexOf("dropped") === 0 ? "dropped" : "");
      tr.setAttribute("data-id", r[0]);
      cell(tr, r[0] + (r[9] === "kept" ? " (plan sample)" : ""), "id", META.root + "t/" + r[0] + ".html");
      cell(tr, r[2]); cell(tr, r[3]); cell(tr, String(r[4])); cell(tr, r[6] || "—");
      cell(tr, r[7], "b outcome " + (r[7] === "kept" ? "kept" : r[7].indexOf("dropped") === 0 ? "dropped" : ""));
      cell(tr, r[8], "q");
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    $("summary").textContent = hits.length + " matching of " + rows.length + " loaded" +
      (loaded < META.chunks ? " (loading index: " + rows.length + " of " + META.total + ")" : "");
    $("page").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0; $("next").disabled = page >= pages - 1;
    document.body.setAttribute("data-index-loaded", loaded >= META.chunks ? "yes" : "no");
  }
  ["f-q", "f-outcome", "f-status", "f-category", "f-tool", "f-tmin", "f-tmax"].forEach(function (id) {
    $(id).addEventListener("input", function () { page = 0; render(); });
  });
  $("prev").addEventListener("click", function () { page--; render(); });
  $("next").addEventListener("click", function () { page++; render(); });
  var params = new URLSearchParams(location.hash.slice(1));
  params.forEach(function (v, k) { if ($("f-" + k)) $("f-" + k).value = v; });
  if (META.chunks > 0) load(0); else render();
})();
