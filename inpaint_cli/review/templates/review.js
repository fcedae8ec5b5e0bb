// The review page: shows one page of rows at a time from the JSON in #rows-data.
// Every value goes into the page with textContent or as an attribute, never as HTML.
(function () {
  "use strict";
  var rows = JSON.parse(document.getElementById("rows-data").textContent);
  var pageSize = Number(document.body.getAttribute("data-page-size")) || 50;
  var template = document.getElementById("row-template");
  var list = document.getElementById("rows");
  var filter = document.getElementById("filter");
  var previous = document.getElementById("previous");
  var next = document.getElementById("next");
  var position = document.getElementById("position");
  var shown = rows;
  var page = 0;

  function keep(row, choice) {
    var suspicious = row.s !== "failed" && (row.q || []).length > 0;
    if (choice === "all") return true;
    if (choice === "attention") return row.s === "failed" || suspicious;
    if (choice === "suspicious") return suspicious;
    return choice === "status:" + row.s;
  }

  function setView(frame, buttons, view) {
    frame.setAttribute("data-view", view);
    buttons.forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-view") === view));
    });
  }

  function link(parent, label, href) {
    if (!href) return;
    var anchor = document.createElement("a");
    anchor.href = href;
    anchor.textContent = label;
    parent.appendChild(anchor);
  }

  function fill(row) {
    var item = template.content.firstElementChild.cloneNode(true);
    var frame = item.querySelector(".frame");
    var thumbs = row.th || [];
    var layers = ["input", "mask", "result"];
    var any = false;
    layers.forEach(function (kind, index) {
      var img = item.querySelector(".layer." + kind);
      if (thumbs[index]) {
        img.src = thumbs[index];
        any = true;
      } else {
        img.removeAttribute("src");
      }
    });
    if (!any) frame.classList.add("empty");
    var buttons = Array.prototype.slice.call(item.querySelectorAll(".views button"));
    buttons.forEach(function (button) {
      var view = button.getAttribute("data-view");
      var needs = { compare: [0, 2], input: [0], mask: [1], result: [2] }[view];
      button.disabled = !needs.every(function (index) { return thumbs[index]; });
    });
    var slider = item.querySelector(".slider");
    slider.disabled = !(thumbs[0] && thumbs[2]);
    if (!thumbs[2]) setView(frame, buttons, thumbs[0] ? "input" : "mask");
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        setView(frame, buttons, button.getAttribute("data-view"));
      });
    });
    slider.addEventListener("input", function () {
      setView(frame, buttons, "compare");
      frame.style.setProperty("--hide", 100 - Number(slider.value) + "%");
    });
    item.setAttribute("data-status", row.s);
    item.querySelector(".name").textContent = row.n;
    item.querySelector(".status").textContent = row.s;
    item.querySelector(".model").textContent = row.m || "";
    item.querySelector(".strategy").textContent = row.g || "";
    item.querySelector(".time").textContent = typeof row.t === "number" ? row.t.toFixed(2) + " s" : "";
    item.querySelector(".error").textContent = row.e || "";
    var notes = item.querySelector(".notes");
    (row.q || []).concat(row.o ? [row.o] : []).forEach(function (text) {
      var note = document.createElement("li");
      note.textContent = text;
      notes.appendChild(note);
    });
    var links = item.querySelector(".links");
    var paths = row.l || [];
    link(links, "input", paths[0]);
    (row.k || []).forEach(function (href, index) {
      link(links, row.k.length > 1 ? "mask " + (index + 1) : "mask", href);
    });
    link(links, "result", paths[1]);
    return item;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(shown.length / pageSize));
    page = Math.min(Math.max(page, 0), pages - 1);
    var fragment = document.createDocumentFragment();
    shown.slice(page * pageSize, (page + 1) * pageSize).forEach(function (row) {
      fragment.appendChild(fill(row));
    });
    list.replaceChildren(fragment);
    position.textContent = "page " + (page + 1) + " of " + pages + " (" + shown.length + " shown)";
    previous.disabled = page === 0;
    next.disabled = page >= pages - 1;
    // The filter and page live in the address (#filter=...&page=N): a reload keeps the place.
    var address = "#filter=" + encodeURIComponent(filter.value) + "&page=" + (page + 1);
    if (window.location.hash !== address) history.replaceState(null, "", address);
  }

  function choose(value) {
    var known = Array.prototype.some.call(filter.options, function (option) { return option.value === value; });
    filter.value = known ? value : "all";
    shown = rows.filter(function (row) { return keep(row, filter.value); });
  }

  filter.addEventListener("change", function () {
    choose(filter.value);
    page = 0;
    render();
    window.scrollTo(0, 0);
  });
  previous.addEventListener("click", function () { page -= 1; render(); window.scrollTo(0, 0); });
  next.addEventListener("click", function () { page += 1; render(); window.scrollTo(0, 0); });
  var saved = new URLSearchParams(window.location.hash.slice(1));
  choose(saved.get("filter") || "all");
  page = (Number(saved.get("page")) || 1) - 1;
  render();
})();
