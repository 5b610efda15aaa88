// Live mode: send the form as JSON on every edit; show each result as it arrives.
(function () {
  "use strict";
  var form = document.getElementById("live-form");
  if (!form) return;
  var status = document.getElementById("live-status");
  var errors = document.getElementById("live-errors");
  var figure = document.getElementById("live-figure");
  var image = document.getElementById("live-image");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var socket = null;
  var timer = null;

  // The page hides what only works with this script (the status, the image).
  status.hidden = false;
  figure.hidden = false;

  // The input as JSON text. A seed is written as the digits typed, not through a JS number:
  // seeds go up to 2**64 - 1 and a double rounds anything past 2**53 (…207 becomes …200).
  function input() {
    var data = { prompt: form.prompt.value, image_size: "square", num_inference_steps: 4 };
    var seed = form.seed.value.trim();
    if (/^-?\d+$/.test(seed)) {
      seed = seed.replace(/^(-?)0+(?=\d)/, "$1");  // JSON allows no leading zeros
      return JSON.stringify(data).replace(/}$/, ',"seed":' + seed + "}");
    }
    if (seed !== "") data.seed = seed;  // not a number: the server says what is wrong
    return JSON.stringify(data);
  }

  function send() {
    if (!form.prompt.value.trim()) {
      status.textContent = "Type a prompt to see an image";
      return;
    }
    if (!socket || socket.readyState !== WebSocket.OPEN) return connect();
    status.textContent = "Generating…";
    socket.send(input());
  }

  function connect() {
    if (socket) return;  // still connecting: onopen sends the newest input
    socket = new WebSocket(scheme + location.host + form.dataset.socket);
    socket.onopen = function () { status.textContent = "Connected"; send(); };
    socket.onclose = function () { status.textContent = "Disconnected — edit to reconnect"; socket = null; };
    socket.onmessage = function (event) {
      // The server sends integers past 2**53 (seeds) as strings, so parsing keeps their digits.
      var message = JSON.parse(event.data);
      if (message.type === "result") {
        errors.textContent = "";
        var first = message.result.images && message.result.images[0];
        // Only an image's URL goes into src, whatever the upstream sent.
        if (first && /^(data:image\/|https?:)/i.test(first.url)) image.src = first.url;
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
