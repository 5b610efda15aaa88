// Small enhancements on top of htmx; every page works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-add-row], [data-remove-row]");
    if (!button) return;

    if (button.hasAttribute("data-copy")) {
      // Copy the element's text: seeds stay exact because they never become JS numbers.
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) return;
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1200);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.textContent).then(done);
      } else {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (document.execCommand("copy")) done();
      }
      return;
    }

    var list = button.closest("fieldset.list");
    if (button.hasAttribute("data-remove-row")) {
      button.closest("[data-row]").remove();
    } else {
      // Indexes only need to be unique and increasing: the server renumbers rows in order.
      var index = Number(list.getAttribute("data-next-index"));
      var template = list.querySelector("template[data-row-template]");
      var html = template.innerHTML.replace(/__index__/g, String(index));
      list.setAttribute("data-next-index", String(index + 1));
      template.insertAdjacentHTML("beforebegin", html);
    }
    var full = list.querySelectorAll("[data-row]").length >= Number(list.getAttribute("data-max-rows"));
    list.querySelector("[data-add-row]").hidden = full;
  });

  // A slider beside a bounded number box: both show the same value; the box is what posts.
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target.matches("input[type=range][data-slider-for]")) {
      var box = document.getElementById(target.getAttribute("data-slider-for"));
      if (box) box.value = target.value;
    } else if (target.matches("input[type=number]") && target.id) {
      var slider = document.querySelector('[data-slider-for="' + target.id + '"]');
      if (slider && target.value !== "") slider.value = target.value;
    }
  });

  // A chosen image file shows at once, before the form is sent.
  function preview(input) {
    var field = input.name.replace(/_file$/, "");
    var image = document.querySelector('[data-preview-for="' + field + '"]');
    var file = input.files && input.files[0];
    if (!image || !file || !/^image\//.test(file.type)) return;
    var url = URL.createObjectURL(file);
    image.src = url;
    image.hidden = false;
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-file-input] input[type=file]")) preview(event.target);
  });

  // Drop a file on, or paste one into, a file field: it becomes the field's chosen file.
  function put(box, files) {
    var input = box.querySelector("input[type=file]");
    if (!input || !files || !files.length) return false;
    var transfer = new DataTransfer();
    for (var i = 0; i < (input.multiple ? files.length : 1); i++) transfer.items.add(files[i]);
    input.files = transfer.files;
    preview(input);
    return true;
  }
  document.addEventListener("dragover", function (event) {
    if (event.target.closest && event.target.closest("[data-file-input]")) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    var box = event.target.closest && event.target.closest("[data-file-input]");
    if (box && put(box, event.dataTransfer.files)) event.preventDefault();
  });
  document.addEventListener("paste", function (event) {
    var box = event.target.closest && event.target.closest("[data-file-input]");
    if (box && event.clipboardData && put(box, event.clipboardData.files)) event.preventDefault();
  });

  // A request page follows its request over server-sent events (htmx's sse extension, see
  // falweb/status_events.py) and keeps the status section's 1 s poll as the fallback: a poll
  // goes out only while that event stream is not open (refused, ended, broken, reconnecting).
  var streams = new WeakMap();
  document.addEventListener("htmx:sseOpen", function (event) {
    streams.set(event.target, event.detail.source);
  });
  document.addEventListener("htmx:sseError", function (event) {
    // Closed for good (the server answered 204: push is off or full): the extension would
    // try again and again, with backoff; the polls carry on instead.
    var source = event.detail.source;
    if (source && source.readyState === EventSource.CLOSED) {
      event.target.removeAttribute("sse-connect");
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var section = event.target;
    if (!section.matches || !section.matches("[sse-swap][hx-get]")) return;
    var host = section.closest("[sse-connect]");
    var source = host && streams.get(host);
    if (source && source.readyState === EventSource.OPEN) event.preventDefault();
  });
})();
