"use strict";
// The playground: a form that follows the chosen workflow's manifest (GET /v1/workflows),
// uploads for image workflows, progress from the event stream, Cancel, and a gallery of
// the caller's recent results. Plain JavaScript, no build step.

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
// Parameters with a place of their own in the form; the rest go under "More settings".
const PLACED = new Set(["prompt", "negative_prompt", "seed", "count"]);
const ACTIVE = new Set(["queued", "dispatched", "running"]);
const state = { workflows: [], specs: new Map(), imageParam: null, upload: null, current: null, stream: null, last: null, cancelling: false };

// -- talking to the API ------------------------------------------------------------------

function auth() {
  const key = $("key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function answer(response) {
  if (response.status === 401) $("key-box").classList.add("needed");
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return data;
}

async function call(method, path, body) {
  const headers = Object.assign({ "Content-Type": "application/json" }, auth());
  return answer(await fetch(path, { method, headers, body: body && JSON.stringify(body) }));
}

// -- what the result pane shows ----------------------------------------------------------

function say(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function bar(fraction) {
  $("bar-box").hidden = fraction === null;
  $("bar").style.width = Math.round((fraction || 0) * 100) + "%";
}

function clearResult() {
  $("images").replaceChildren();
  bar(null);
}

function waitText(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return ", less than a second";
  if (seconds < 90) return `, about ${Math.round(seconds)} s`;
  return `, about ${Math.round(seconds / 60)} min`;
}

function show(view) {
  state.last = view;
  const mine = view.id === state.current;
  $("cancel").hidden = !(mine && ACTIVE.has(view.status));
  if (view.status === "queued") {
    const ahead = view.position === null || view.position === undefined ? "" : `: ${view.position} ahead`;
    say(`Queued${ahead}${waitText(view.estimated_wait_s)}`);
    bar(0);
  } else if (ACTIVE.has(view.status)) {
    const pct = Math.round((view.progress || 0) * 100);
    say(state.cancelling && mine ? "Cancelling..." : `Making it: ${pct}% ${view.progress_note || ""}`.trim());
    bar(view.progress || 0);
  } else if (view.status === "succeeded") {
    say(`Done: ${view.id}`);
    bar(null);
  } else {
    // A failure or a cancel: no stale images or bar under the sentence.
    clearResult();
    say(view.status === "cancelled" ? "Cancelled." : `Failed: ${view.error ? view.error.message : view.status}`, view.status === "failed");
    return;
  }
  $("images").replaceChildren(...(view.images || []).map((image) => {
    const link = document.createElement("a");
    link.href = image.url; link.target = "_blank"; link.rel = "noopener";
    const img = document.createElement("img");
    img.src = image.url; img.alt = (view.params && view.params.prompt) || view.id;
    img.width = image.width; img.height = image.height;
    link.append(img);
    return link;
  }));
}

// -- following a generation: server-sent events over fetch (EventSource cannot send the
// Authorization header an API key needs) ------------------------------------------------

async function follow(id) {
  if (state.stream) state.stream.abort();
  const control = new AbortController();
  state.stream = control;
  try {
    const response = await fetch(`/v1/generations/${encodeURIComponent(id)}/events`, { headers: auth(), signal: control.signal });
    if (!response.ok) { show(await answer(response)); return; }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (!event || !data) continue;
        if (event === "done") { finished(JSON.parse(data)); return; }
        if (event === "gone") { clearResult(); say("That generation no longer exists.", true); return; }
        if (event === "progress") {
          const moved = JSON.parse(data);
          const keep = state.last && state.last.id === moved.id && moved.status === "queued" ? state.last.estimated_wait_s : null;
          show(Object.assign({}, state.last, moved, { estimated_wait_s: keep }));
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  } finally {
    if (state.stream === control) state.stream = null;
  }
  if (control.signal.aborted) return;
  // The stream ended early (a proxy, a restart): look again, and follow on if unfinished.
  const view = await call("GET", `/v1/generations/${encodeURIComponent(id)}`).catch(() => null);
  if (view && ACTIVE.has(view.status)) { show(view); setTimeout(() => follow(id), 1000); }
  else if (view) finished(view);
}

function finished(view) {
  state.cancelling = false;
  show(view);
  refreshGallery();
}

// -- the form, built from the workflow's manifest ----------------------------------------

function human(name) {
  if (name.length <= 3) return name.toUpperCase(); // cfg, vae: initials
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function specsOf(workflow) {
  const specs = workflow.parameter_specs && workflow.parameter_specs.length
    ? workflow.parameter_specs
    : workflow.parameters.map((name) => ({ name, type: "string" }));
  return new Map(specs.map((spec) => [spec.name, spec]));
}

function options(select, names, defaultLabel) {
  select.replaceChildren(new Option(defaultLabel, ""), ...names.map((name) => new Option(name, name)));
}

function numberBounds(input, spec) {
  if (spec.min !== null && spec.min !== undefined) input.min = spec.min;
  if (spec.max !== null && spec.max !== undefined) input.max = spec.max;
  input.step = spec.type === "float" ? "any" : String(spec.step || 1);
  input.placeholder = spec.type === "seed" ? "random" : spec.default !== null && spec.default !== undefined ? `default ${spec.default}` : "";
}

function extraField(spec) {
  const box = document.createElement("div");
  const label = document.createElement("label");
  label.htmlFor = "param-" + spec.name;
  label.textContent = spec.title || human(spec.name);
  let input;
  if (spec.type === "choice") {
    input = document.createElement("select");
    input.append(new Option(`default (${spec.default ?? "none"})`, ""), ...spec.choices.map((c) => new Option(String(c), String(c))));
  } else if (spec.type === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = spec.default === true;
  } else {
    input = document.createElement("input");
    if (["int", "float", "seed"].includes(spec.type)) { input.type = "number"; numberBounds(input, spec); }
    else { input.placeholder = spec.default ?? ""; if (spec.max_length) input.maxLength = spec.max_length; }
  }
  input.id = "param-" + spec.name;
  input.dataset.param = spec.name;
  box.append(label, input);
  if (spec.help) {
    const hint = document.createElement("p");
    hint.className = "hint"; hint.textContent = spec.help;
    box.append(hint);
  }
  return box;
}

function useWorkflow(name) {
  const workflow = state.workflows.find((w) => w.name === name);
  if (!workflow) return;
  store.setItem("stillhouse.workflow", name);
  const specs = specsOf(workflow);
  state.specs = specs;
  $("workflow-about").textContent = workflow.description || "";
  const prompt = specs.get("prompt") || {};
  $("prompt").maxLength = prompt.max_length || 6000;
  const negative = specs.get("negative_prompt");
  $("negative-box").hidden = !negative;
  if (negative) {
    $("negative").placeholder = negative.default || "";
    $("negative-hint").textContent = negative.help || "";
  } else $("negative").value = "";
  const image = [...specs.values()].find((s) => s.type === "image");
  state.imageParam = image ? image.name : null;
  $("image-box").hidden = !image;
  if (image) {
    $("image-label").textContent = (image.title || "Image") + (image.required ? "" : " (optional)");
    $("image-hint").textContent = image.help || "";
  }
  options($("mode"), workflow.presets, "default");
  $("mode-box").hidden = workflow.presets.length === 0;
  options($("aspect"), workflow.aspects, "default");
  $("aspect-box").hidden = workflow.aspects.length === 0;
  $("mode-box").parentElement.hidden = $("mode-box").hidden && $("aspect-box").hidden;
  for (const [field, spec] of [["count", specs.get("count")], ["seed", specs.get("seed")]]) {
    $(field + "-box").hidden = !spec;
    if (spec) numberBounds($(field), spec);
    else $(field).value = "";
  }
  $("count-box").parentElement.hidden = $("count-box").hidden && $("seed-box").hidden;
  const extra = [...specs.values()].filter((s) => !PLACED.has(s.name) && s.type !== "image");
  $("extra").replaceChildren(...extra.map(extraField));
  $("more").hidden = extra.length === 0;
}

function valueOf(spec, raw) {
  if (["int", "seed"].includes(spec.type)) return parseInt(raw, 10);
  if (spec.type === "float") return parseFloat(raw);
  if (spec.type === "choice") return spec.choices.find((c) => String(c) === raw);
  return raw;
}

function requestBody() {
  const body = { prompt: $("prompt").value, workflow: $("workflow").value };
  const params = {};
  if (!$("negative-box").hidden && $("negative").value) body.negative_prompt = $("negative").value;
  if ($("mode").value) body.mode = $("mode").value;
  if ($("aspect").value) body.aspect = $("aspect").value;
  if (!$("count-box").hidden && $("count").value) body.count = parseInt($("count").value, 10);
  if (!$("seed-box").hidden && $("seed").value) body.seed = parseInt($("seed").value, 10);
  for (const input of $("extra").querySelectorAll("[data-param]")) {
    const spec = state.specs.get(input.dataset.param);
    if (spec.type === "bool") { if (input.checked !== (spec.default === true)) params[spec.name] = input.checked; }
    else if (input.value !== "") params[spec.name] = valueOf(spec, input.value);
  }
  if (state.imageParam && state.upload) params[state.imageParam] = state.upload.key;
  if (Object.keys(params).length) body.params = params;
  return body;
}

// -- the image to start from: POST /v1/uploads, then its key goes in params ----------------

function forgetImage(keepChoice) {
  state.upload = null;
  if (!keepChoice) $("image").value = "";
  $("image-preview").hidden = true;
  $("image-preview").removeAttribute("src");
  $("image-clear").hidden = true;
  $("drop-text").textContent = "Drop an image here, or choose one.";
}

async function chooseImage(file) {
  if (!file) return;
  forgetImage(true);
  $("go").disabled = true;
  say(`Uploading ${file.name}...`);
  try {
    const form = new FormData();
    form.append("file", file);
    const upload = await answer(await fetch("/v1/uploads", { method: "POST", headers: auth(), body: form }));
    state.upload = upload;
    $("image-preview").src = upload.url;
    $("image-preview").hidden = false;
    $("image-clear").hidden = false;
    $("drop-text").textContent = `${file.name}, ${upload.width}x${upload.height}`;
    say("Image ready: write a prompt and press Generate.");
  } catch (e) {
    forgetImage();
    say(e.message, true);
  } finally {
    $("go").disabled = false;
  }
}

function dropZone() {
  const zone = $("drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    chooseImage(e.dataTransfer.files[0]);
  });
  $("image").addEventListener("change", () => chooseImage($("image").files[0]));
  $("image-clear").addEventListener("click", () => forgetImage(false));
}

// -- the gallery: GET /v1/generations, newest first ----------------------------------------

function tile(view) {
  const link = document.createElement("a");
  link.href = "#" + view.id;
  const prompt = (view.params && view.params.prompt) || view.id;
  link.title = `${prompt} (${view.status})`;
  const first = (view.images || [])[0];
  if (first) {
    const img = document.createElement("img");
    img.src = first.url; img.alt = prompt; img.loading = "lazy";
    link.append(img);
  }
  if (view.status === "failed") link.className = "bad";
  const caption = document.createElement("span");
  caption.textContent = view.status === "succeeded" ? prompt : view.status;
  link.append(caption);
  return link;
}

async function refreshGallery() {
  try {
    const page = await call("GET", "/v1/generations?limit=12");
    const views = page.generations || [];
    $("gallery").replaceChildren(...views.map(tile));
    $("gallery-empty").hidden = views.length > 0;
  } catch (e) {
    $("gallery-empty").textContent = `The gallery is unavailable: ${e.message}`;
  }
}

// -- wiring ----------------------------------------------------------------------------------

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  store.setItem("stillhouse.key", $("key").value.trim());
  const body = requestBody();
  $("go").disabled = true;
  clearResult();
  say("Sending...");
  if ($("result").getBoundingClientRect().top > window.innerHeight) $("result").scrollIntoView();
  try {
    const view = await call("POST", "/v1/generations", body);
    state.current = view.id;
    state.cancelling = false;
    history.replaceState(null, "", "#" + view.id);
    show(Object.assign({ images: [], params: body }, view));
    refreshGallery();
    await follow(view.id);
  } catch (e) {
    clearResult();
    $("cancel").hidden = true;
    say(e.message, true);
  } finally {
    $("go").disabled = false;
  }
});

$("cancel").addEventListener("click", async () => {
  if (!state.current) return;
  state.cancelling = true;
  $("cancel").disabled = true;
  try {
    show(await call("DELETE", `/v1/generations/${encodeURIComponent(state.current)}`));
  } catch (e) {
    state.cancelling = false;
    say(e.message, true);
  } finally {
    $("cancel").disabled = false;
  }
});

$("workflow").addEventListener("change", () => useWorkflow($("workflow").value));

async function showLinked() {
  // `/#<id>` opens a generation: links to results can be shared.
  const id = decodeURIComponent(location.hash.slice(1));
  if (!id || id === state.current && state.stream) return;
  try {
    const view = await call("GET", `/v1/generations/${encodeURIComponent(id)}`);
    state.current = view.id;
    state.cancelling = false;
    $("prompt").value = view.params.prompt || "";
    if (state.workflows.some((w) => w.name === view.workflow)) {
      $("workflow").value = view.workflow;
      useWorkflow(view.workflow);
    }
    show(view);
    if (ACTIVE.has(view.status)) await follow(id);
  } catch (e) {
    clearResult();
    say(e.message, true);
  }
}
window.addEventListener("hashchange", showLinked);

(async () => {
  $("key").value = store.getItem("stillhouse.key") || "";
  dropZone();
  try {
    state.workflows = await call("GET", "/v1/workflows");
    const remembered = store.getItem("stillhouse.workflow");
    const chosen = state.workflows.find((w) => w.name === remembered) || state.workflows.find((w) => w.default) || state.workflows[0];
    $("workflow").replaceChildren(...state.workflows.map((w) => new Option(`${w.title} (${w.name})`, w.name)));
    if (chosen) { $("workflow").value = chosen.name; useWorkflow(chosen.name); }
  } catch (e) {
    say(e.message, true);
  }
  refreshGallery();
  showLinked();
})();
