// Renders /openapi.json as a list of endpoints (served locally: no Swagger UI from a CDN).
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

async function main() {
  const root = document.getElementById("api");
  let spec;
  try {
    const resp = await fetch("/openapi.json");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    spec = await resp.json();
  } catch (e) {
    document.getElementById("messages").replaceChildren(el("p", {text: `could not read /openapi.json: ${e.message}`}));
    return;
  }
  const rows = [];
  for (const [path, ops] of Object.entries(spec.paths).sort()) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map(p =>
        el("li", {}, el("code", {text: p.name}), ` (${p.in}${p.required ? ", required" : ""})`,
           p.description ? ` – ${p.description}` : ""));
      const target = method === "get" && !path.includes("{")
        ? el("a", {href: path, text: path}) : el("code", {text: path});
      rows.push(el("div", {class: "endpoint"},
        el("h3", {}, el("span", {class: `method ${method}`, text: method.toUpperCase()}), " ", target),
        el("p", {class: "muted", text: op.summary || op.description || ""}),
        params.length ? el("ul", {}, ...params) : null));
    }
  }
  root.replaceChildren(el("p", {text: `${spec.info.title} ${spec.info.version}`}), ...rows);
}

main();
