// Vary Region's mask editor: paint over the image, send the prompt and a mask (a PNG the
// image's size: white where painted, black elsewhere). No build step, no network but
// this server's own routes, all relative to the link: /edit/<token>/source, /image and
// POST /edit/<token>.
"use strict";

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const $ = (id) => document.getElementById(id);

const state = { width: 0, height: 0, strokes: [], drawing: null, sending: false };

function say(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

async function detail(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch (_) {
    // not JSON: fall through
  }
  return `The server answered ${response.status}.`;
}

// Every stroke, drawn in `color` on a context the image's size.
function drawStrokes(ctx, strokes, color) {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  for (const stroke of strokes) {
    const [first, ...rest] = stroke.points;
    ctx.beginPath();
    ctx.arc(first.x, first.y, stroke.size / 2, 0, Math.PI * 2);
    ctx.fill();
    if (rest.length) {
      ctx.lineWidth = stroke.size;
      ctx.beginPath();
      ctx.moveTo(first.x, first.y);
      for (const point of rest) ctx.lineTo(point.x, point.y);
      ctx.stroke();
    }
  }
}

function redraw() {
  const canvas = $("paint");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // One colour for the whole region: overlapping strokes do not darken.
  const layer = document.createElement("canvas");
  layer.width = canvas.width;
  layer.height = canvas.height;
  drawStrokes(layer.getContext("2d"), state.strokes, "#00bcd4");
  ctx.globalAlpha = 0.55;
  ctx.drawImage(layer, 0, 0);
  ctx.globalAlpha = 1;
  $("undo").disabled = $("clear").disabled = state.strokes.length === 0;
}

// Where the pointer is, in the image's own pixels.
function at(event) {
  const box = $("paint").getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) / box.width) * state.width,
    y: ((event.clientY - box.top) / box.height) * state.height,
  };
}

function brushSize() {
  return Number($("brush").value);
}

function showBrush() {
  $("brush-size").textContent = `${brushSize()} px`;
}

function startPainting(canvas) {
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || state.sending) return;
    canvas.setPointerCapture(event.pointerId);
    state.drawing = { size: brushSize(), points: [at(event)] };
    state.strokes.push(state.drawing);
    redraw();
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.drawing) return;
    state.drawing.points.push(at(event));
    redraw();
  });
  const stop = () => {
    state.drawing = null;
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
}

// The mask: black, and white wherever a stroke went.
function maskBlob() {
  const mask = document.createElement("canvas");
  mask.width = state.width;
  mask.height = state.height;
  const ctx = mask.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, mask.width, mask.height);
  drawStrokes(ctx, state.strokes, "#fff");
  return new Promise((resolve) => mask.toBlob(resolve, "image/png"));
}

async function send(event) {
  event.preventDefault();
  if (state.sending) return;
  if (!state.strokes.length) {
    say("Paint over the part to change first: the region is empty.", "error");
    return;
  }
  const prompt = $("prompt").value.trim();
  if (!prompt) {
    say("Say what the painted region should show.", "error");
    return;
  }
  state.sending = true;
  $("submit").disabled = true;
  say("Sending…");
  try {
    const form = new FormData();
    form.append("prompt", prompt);
    form.append("mask", await maskBlob(), "mask.png");
    const response = await fetch(encodeURIComponent(token), { method: "POST", body: form });
    if (!response.ok) {
      say(await detail(response), "error");
      $("status").scrollIntoView({ block: "nearest" });
      return;
    }
    const done = await response.json();
    say(`${done.message} (request ${done.id})`, "done");
    $("status").dataset.job = done.id;
    $("status").scrollIntoView({ block: "nearest" });
  } catch (_) {
    say("The server could not be reached; try again.", "error");
  } finally {
    state.sending = false;
    $("submit").disabled = false;
  }
}

function loaded(image) {
  return new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = reject;
  });
}

async function open() {
  let source;
  try {
    const response = await fetch(`${encodeURIComponent(token)}/source`);
    if (!response.ok) {
      say(await detail(response), "error");
      return;
    }
    source = await response.json();
  } catch (_) {
    say("The server could not be reached; reload the page to try again.", "error");
    return;
  }
  state.width = source.width;
  state.height = source.height;
  const image = $("source");
  const ready = loaded(image);
  image.src = `${encodeURIComponent(token)}/image`;
  try {
    await ready;
  } catch (_) {
    say("The image could not be loaded; reload the page to try again.", "error");
    return;
  }
  // The source's own size decides the mask's, whatever the file says.
  const canvas = $("paint");
  canvas.width = state.width;
  canvas.height = state.height;
  const brush = $("brush");
  brush.max = String(Math.max(16, Math.round(Math.max(state.width, state.height) / 2)));
  brush.value = String(Math.max(8, Math.round(Math.max(state.width, state.height) / 16)));
  showBrush();
  $("prompt").value = source.prompt;
  $("prompt").maxLength = source.prompt_max;
  $("workflow").textContent = `Repainted with ${source.workflow}.`;
  const until = new Date(source.expires_at);
  $("expires").textContent = `This link works until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`;
  startPainting(canvas);
  redraw();
  $("editor").hidden = false;
  say("Paint the region to change.");
  document.body.dataset.ready = "true";
}

$("brush").addEventListener("input", showBrush);
$("undo").addEventListener("click", () => {
  state.strokes.pop();
  redraw();
});
$("clear").addEventListener("click", () => {
  state.strokes = [];
  redraw();
});
$("form").addEventListener("submit", send);
open();
