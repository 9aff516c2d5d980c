// The textrnn playground: one page over the server's own REST API, no libraries.
//   models   GET /playground/models (names), then per model the status API
//            GET /v1/models/<name> (versions) and .../metadata (signatures -> kind)
//   classify POST :predict {"instances": [text]}             -> label, a bar per class
//   generate POST :generate_stream (server-sent events)      -> text as it is sampled
//   translate POST :predict on the "translate" signature     -> n-best, attention heatmap
// Errors are shown as the API's own {"error": "..."} message.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, stream: null };

class ApiError extends Error {}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  return readJson(response);
}

async function readJson(response) {
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch (error) {
    throw new ApiError(`HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    throw new ApiError(answer.error || `HTTP ${response.status}`);
  }
  return answer;
}

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof ApiError ? error.message : `request failed: ${error.message}`;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ----------------------------------------------------------------------------- models

function kindOf(signatures) {
  if (signatures.includes("translate")) return "translator";
  if (signatures.includes("generate") && signatures.includes("step")) return "language-model";
  if (signatures.includes("classify")) return "classifier";
  return "unknown";
}

const KIND_NAMES = {
  "classifier": "classifier",
  "language-model": "language model",
  "translator": "translator",
  "unknown": "other",
};

async function describeModel(name) {
  const base = `/v1/models/${encodeURIComponent(name)}`;
  const [status, metadata] = await Promise.all([api(base), api(`${base}/metadata`)]);
  const versions = status.model_version_status
    .filter((v) => v.state === "AVAILABLE")
    .map((v) => v.version)
    .sort((a, b) => Number(b) - Number(a));
  const signatures = Object.keys(metadata.metadata.signature_def.signature_def || {}).sort();
  return { name, versions, signatures, kind: kindOf(signatures) };
}

async function loadModels() {
  const list = $("models");
  try {
    const { models } = await api("/playground/models");
    const described = await Promise.all(models.map(describeModel));
    list.replaceChildren(...described.map(modelItem));
    if (!described.length) {
      list.innerHTML = '<li class="muted">no models yet (the server polls its base path)</li>';
    }
  } catch (error) {
    list.innerHTML = '<li class="muted">could not list the models</li>';
    showError(error);
  }
}

function modelItem(model) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.className = "model";
  button.dataset.model = model.name;
  button.innerHTML = `<strong></strong> <span class="kind">${KIND_NAMES[model.kind]}</span>`;
  button.querySelector("strong").textContent = model.name;
  const select = document.createElement("select");
  select.title = "version";
  select.dataset.model = model.name;
  for (const version of ["latest", ...model.versions]) {
    const option = document.createElement("option");
    option.value = version;
    option.textContent = version === "latest" ? `latest (${model.versions[0]})` : `v${version}`;
    select.append(option);
  }
  button.addEventListener("click", () => choose(model, button, select));
  select.addEventListener("change", () => choose(model, button, select));
  item.append(button, select);
  return item;
}

function choose(model, button, select) {
  stopStream();
  clearError();
  document.querySelectorAll("button.model").forEach((b) => b.classList.remove("active"));
  button.classList.add("active");
  const version = select.value;
  const path = `/v1/models/${encodeURIComponent(model.name)}` +
    (version === "latest" ? "" : `/versions/${encodeURIComponent(version)}`);
  state.model = { ...model, path };
  $("choose").hidden = true;
  for (const panel of document.querySelectorAll(".task")) {
    panel.hidden = panel.id !== (model.kind === "unknown" ? "unknown" : model.kind);
  }
  const title = version === "latest" ? model.name : `${model.name} v${version}`;
  document.querySelectorAll(".model-title").forEach((t) => (t.textContent = title));
  $("unknown-signatures").textContent = model.signatures.join(", ");
}

// ----------------------------------------------------------------------------- classifier

async function classify() {
  clearError();
  const result = $("classify-result");
  result.replaceChildren();
  try {
    const answer = await api(`${state.model.path}:predict`, { instances: [$("classify-text").value] });
    const row = answer.predictions[0];
    const label = document.createElement("div");
    label.className = "label";
    label.innerHTML = "label: <strong></strong> <span class=\"muted\"></span>";
    label.querySelector("strong").textContent = row.label;
    label.querySelector("span").textContent = `(${(100 * row.probability).toFixed(1)}%)`;
    result.append(label);
    row.classes.forEach((name, index) => {
      result.append(barRow(name, row.probabilities[index], name === row.label));
    });
  } catch (error) {
    showError(error);
  }
}

function barRow(name, probability, best) {
  const row = document.createElement("div");
  row.className = best ? "bar-row best" : "bar-row";
  row.innerHTML = '<span class="class-name"></span><div class="bar-track"><div class="bar"></div></div>' +
    '<span class="probability"></span>';
  row.querySelector(".class-name").textContent = name;
  row.querySelector(".bar").style.width = `${(100 * probability).toFixed(1)}%`;
  row.querySelector(".probability").textContent = `${(100 * probability).toFixed(1)}%`;
  return row;
}

// ----------------------------------------------------------------------------- language model

function knob(id, parse) {
  const text = $(id).value.trim();
  return text === "" ? undefined : parse(text);
}

async function generate() {
  clearError();
  stopStream();
  const prompt = $("lm-prompt").value;
  const body = {
    prompt,
    max_tokens: knob("lm-max-tokens", Number),
    temperature: knob("lm-temperature", Number),
    top_k: knob("lm-top-k", Number),
    top_p: knob("lm-top-p", Number),
    seed: knob("lm-seed", Number),
  };
  const output = $("lm-output");
  output.replaceChildren();
  const shown = document.createElement("span");
  shown.className = "prompt";
  shown.textContent = prompt;
  const generated = document.createTextNode("");
  output.append(shown, generated);
  const controller = new AbortController();
  state.stream = controller;
  setStreaming(true, "generating\u2026");
  const started = performance.now();
  let first = null;
  try {
    const response = await fetch(`${state.model.path}:generate_stream`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      await readJson(response); // throws the API's message
    }
    for await (const event of serverSentEvents(response.body)) {
      if (event.type === "error") throw new ApiError(event.data.error);
      if (event.type === "done") {
        const seconds = (performance.now() - started) / 1000;
        setStreaming(false, `${event.data.tokens} tokens in ${seconds.toFixed(2)} s, ` +
          `first after ${first === null ? "-" : first.toFixed(0)} ms, seed ${event.data.seed}`);
        output.dataset.done = "true";
        return;
      }
      if (first === null) first = performance.now() - started;
      generated.appendData(event.data.text);
    }
    throw new ApiError("the stream ended early");
  } catch (error) {
    if (error.name === "AbortError") {
      setStreaming(false, "stopped");
    } else {
      setStreaming(false, "");
      showError(error);
    }
  } finally {
    if (state.stream === controller) state.stream = null;
  }
}

// Server-sent events from a fetch body: {type, data} for each "event:/data:" block.
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { type, data: JSON.parse(data.join("\n")) };
    }
  }
}

function stopStream() {
  if (state.stream) state.stream.abort();
}

function setStreaming(streaming, status) {
  $("lm-generate").disabled = streaming;
  $("lm-stop").disabled = !streaming;
  $("lm-status").textContent = status;
}

// ----------------------------------------------------------------------------- translator

async function translate() {
  clearError();
  const list = $("mt-nbest");
  list.replaceChildren();
  $("mt-figure").hidden = true;
  try {
    const answer = await api(`${state.model.path}:predict`, {
      signature_name: "translate",
      inputs: { source: [$("mt-source").value], beam_size: Number($("mt-beam").value), max_length: 0 },
    });
    const out = answer.outputs;
    out.hypotheses[0].forEach((text, index) => {
      const score = out.hypothesis_scores[0][index];
      if (index > 0 && (text === "" || !(score > -1e8))) return; // an unfinished beam
      const item = document.createElement("li");
      item.textContent = text;
      const note = document.createElement("span");
      note.className = "score";
      note.textContent = `score ${score.toFixed(3)}`;
      item.append(note);
      list.append(item);
    });
    const source = out.source_tokens[0].filter((token) => token !== "[PAD]");
    const target = out.target_tokens[0].slice(0, out.target_lengths[0]);
    const weights = out.attention[0].slice(0, target.length).map((row) => row.slice(0, source.length));
    drawHeatmap($("mt-heatmap"), source, target, weights);
    $("mt-figure").hidden = false;
  } catch (error) {
    showError(error);
  }
}

// Attention weights as a heatmap: source tokens across the top, target tokens down the left.
function drawHeatmap(canvas, source, target, weights) {
  const context = canvas.getContext("2d");
  context.font = "13px system-ui, sans-serif";
  const widest = (tokens) => Math.max(20, ...tokens.map((t) => context.measureText(t).width));
  const cell = Math.max(18, Math.min(44, Math.floor(640 / Math.max(source.length, 1))));
  const left = Math.ceil(widest(target)) + 12;
  const top = Math.ceil(widest(source) * 0.72) + 16;
  canvas.width = left + cell * source.length + 8;
  canvas.height = top + cell * target.length + 8;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.font = "13px system-ui, sans-serif";
  weights.forEach((row, i) => {
    row.forEach((weight, j) => {
      context.fillStyle = shade(weight);
      context.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    });
  });
  context.fillStyle = "#1d232b";
  context.textBaseline = "middle";
  context.textAlign = "right";
  target.forEach((token, i) => context.fillText(token, left - 6, top + i * cell + cell / 2));
  context.textAlign = "left";
  source.forEach((token, j) => {
    context.save();
    context.translate(left + j * cell + cell / 2, top - 6);
    context.rotate(-Math.PI / 4);
    context.fillText(token, 0, 0);
    context.restore();
  });
  canvas.dataset.cells = String(source.length * target.length);
}

function shade(weight) {
  const w = Math.max(0, Math.min(1, weight));
  const mix = (from, to) => Math.round(from + (to - from) * Math.sqrt(w));
  return `rgb(${mix(246, 20)}, ${mix(248, 60)}, ${mix(252, 130)})`;
}

// ----------------------------------------------------------------------------- start

$("classify-button").addEventListener("click", classify);
$("lm-generate").addEventListener("click", generate);
$("lm-stop").addEventListener("click", stopStream);
$("mt-translate").addEventListener("click", translate);
loadModels();
