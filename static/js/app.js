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
})();
