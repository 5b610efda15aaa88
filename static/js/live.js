// Live mode: send the form as JSON on every edit; show each result as it arrives.
(function () {
  "use strict";
  var form = document.getElementById("live-form");
  if (!form) return;
  var status = document.getElementById("live-status");
  var errors = document.getElementById("live-errors");
  var image = document.getElementById("live-image");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var socket = null;
  var timer = null;

  function input() {
    var data = { prompt: form.prompt.value, image_size: "square", num_inference_steps: 4 };
    // Seeds are whole numbers well inside JavaScript's safe range here (the input caps them).
    if (form.seed.value !== "") data.seed = parseInt(form.seed.value, 10);
    return data;
  }

  function send() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return connect();
    status.textContent = "Generating…";
    socket.send(JSON.stringify(input()));
  }

  function connect() {
    socket = new WebSocket(scheme + location.host + form.dataset.socket);
    socket.onopen = function () { status.textContent = "Connected"; send(); };
    socket.onclose = function () { status.textContent = "Disconnected — edit to reconnect"; socket = null; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "result") {
        errors.textContent = "";
        var first = message.result.images && message.result.images[0];
        if (first) image.src = first.url;
        status.textContent = "Seed " + String(message.result.seed);
      } else if (message.type === "timings") {
        status.textContent += " · " + message.timing + " s";
      } else if (message.type === "invalid") {
        errors.textContent = Object.keys(message.errors || {}).map(function (field) {
          return field + ": " + [].concat(message.errors[field]).join(" ");
        }).join("; ");
        status.textContent = "Fix the input";
      } else if (message.type === "error") {
        errors.textContent = message.reason || message.error;
      }
    };
  }

  // A short debounce on top of the server keeping only the newest input.
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(send, 120);
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); send(); });
  connect();
})();
