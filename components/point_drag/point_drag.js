// Point drag: draggable control points over an image.
// A Streamlit custom component (st.components.v2), plain ES module, no build step, no CDN.
//
// data (from Python, see components/point_drag/__init__.py):
//   image: "data:image/png;base64,..."   width, height: the image's size in pixels
//   points: [[x, y], ...] normalised [-1, 1] (align_corners=False edges)   side: lattice side (links) or 0
//   lines: [[[x, y], ...], ...] polylines drawn under the points (e.g. the warped sampling grid)
//   marks: [{kind: "landed" | "affine", points: [[x, y], ...]}]   view: half-extent of the square view
//   version: any value, echoed in data-version once drawn   radius_px: handle radius in CSS pixels
// Trigger "drop" on release: {points: [[x, y], ...] (all K, normalised), moved: index}.

const SVG_NS = "http://www.w3.org/2000/svg";

function make(name, attrs, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function toUnits(d, p) {
  return [((p[0] + 1) / 2) * d.width, ((p[1] + 1) / 2) * d.height];
}

function toNorm(d, u, v) {
  return [(u / d.width) * 2 - 1, (v / d.height) * 2 - 1];
}

function polyline(d, pts) {
  return pts.map((p) => toUnits(d, p).map((c) => c.toFixed(3)).join(",")).join(" ");
}

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "pd-root";
  root.setAttribute("data-testid", "point-drag");
  const svg = make("svg", { class: "pd-svg", role: "img", "aria-label": "Image with draggable control points" });
  root.appendChild(svg);
  const layers = {};
  for (const name of ["image", "frame", "grid", "links", "marks", "handles"]) {
    layers[name] = make("g", { class: "pd-layer-" + name }, svg);
  }
  const image = make("image", { class: "pd-image", x: 0, y: 0, preserveAspectRatio: "none" }, layers.image);
  const frame = make("rect", { class: "pd-frame", x: 0, y: 0 }, layers.frame);
  parentElement.appendChild(root);
  const st = { root, svg, layers, image, frame, data: null, points: [], drag: null, pending: null, send: null, sent: 0 };
  root.__pd = st;

  const clientToNorm = (e) => {
    const ctm = svg.getScreenCTM();
    if (!ctm) return null;
    const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse());
    const v = st.data.view;
    const [x, y] = toNorm(st.data, p.x, p.y);
    return [Math.min(v, Math.max(-v, x)), Math.min(v, Math.max(-v, y))];
  };

  svg.addEventListener("pointerdown", (e) => {
    const handle = e.target.closest ? e.target.closest(".pd-handle") : null;
    if (!handle || !st.data || e.button !== 0) return;
    e.preventDefault();
    st.drag = { index: Number(handle.dataset.index), pointerId: e.pointerId, moved: false };
    try { svg.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    handle.classList.add("pd-active");
    root.dataset.dragging = "true";
  });

  svg.addEventListener("pointermove", (e) => {
    if (!st.drag) return;
    const p = clientToNorm(e);
    if (!p) return;
    e.preventDefault();
    st.points[st.drag.index] = p;
    st.drag.moved = true;
    placeHandle(st, st.drag.index);
    drawLinks(st);
  });

  const finish = () => {
    if (!st.drag) return;
    const { index, moved } = st.drag;
    st.drag = null;
    root.dataset.dragging = "false";
    const h = st.layers.handles.querySelector(`.pd-handle[data-index="${index}"]`);
    if (h) h.classList.remove("pd-active");
    if (moved && st.send) {
      st.sent += 1;
      root.dataset.sent = String(st.sent);
      st.send("drop", { points: st.points.map((p) => [p[0], p[1]]), moved: index });
    }
    if (st.pending) {
      const d = st.pending;
      st.pending = null;
      render(st, d);
    }
  };
  if (typeof ResizeObserver !== "undefined") {
    // keep the handles' on-screen size when the column is resized
    let lastWidth = 0;
    new ResizeObserver((entries) => {
      const w = entries[0].contentRect.width;
      if (st.data && !st.drag && w > 0 && Math.abs(w - lastWidth) > 8) {
        lastWidth = w;
        render(st, st.data);
      }
    }).observe(svg);
  }
  svg.addEventListener("pointerup", finish);
  svg.addEventListener("pointercancel", finish);
  svg.addEventListener("lostpointercapture", finish);
  return root;
}

function placeHandle(st, i) {
  const g = st.layers.handles.querySelector(`.pd-handle[data-index="${i}"]`);
  if (!g) return;
  const [u, v] = toUnits(st.data, st.points[i]);
  g.setAttribute("transform", `translate(${u.toFixed(3)} ${v.toFixed(3)})`);
}

function drawLinks(st) {
  const d = st.data;
  const n = d.side || 0;
  const layer = st.layers.links;
  layer.replaceChildren();
  if (n < 2 || st.points.length !== n * n) return;
  const segs = [];
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const i = r * n + c;
      if (c + 1 < n) segs.push([i, i + 1]);
      if (r + 1 < n) segs.push([i, i + n]);
    }
  }
  for (const [a, b] of segs) {
    const [x1, y1] = toUnits(d, st.points[a]);
    const [x2, y2] = toUnits(d, st.points[b]);
    make("line", { class: "pd-link", x1, y1, x2, y2 }, layer);
  }
}

function render(st, d) {
  st.data = d;
  st.points = (d.points || []).map((p) => [Number(p[0]), Number(p[1])]);
  const v = d.view || 1.3;
  const [u0, v0] = toUnits(d, [-v, -v]);
  const [u1, v1] = toUnits(d, [v, v]);
  const vw = u1 - u0;
  const vh = v1 - v0;
  st.svg.setAttribute("viewBox", `${u0} ${v0} ${vw} ${vh}`);
  st.svg.style.aspectRatio = `${vw} / ${vh}`;
  st.svg.style.maxWidth = (d.max_width || 640) + "px";
  if (st.image.getAttribute("href") !== d.image) st.image.setAttribute("href", d.image || "");
  for (const node of [st.image, st.frame]) {
    node.setAttribute("width", d.width);
    node.setAttribute("height", d.height);
  }

  const grid = st.layers.grid;
  grid.replaceChildren();
  for (const line of d.lines || []) {
    if (line.length > 1) make("polyline", { class: "pd-grid-line", points: polyline(d, line) }, grid);
  }

  const marks = st.layers.marks;
  marks.replaceChildren();
  // handles keep a constant size on screen: radius_px CSS pixels at the SVG's current width
  const shown = st.svg.getBoundingClientRect().width || Math.min(d.max_width || 640, 640);
  const r = (d.radius_px || 13) * (vw / shown);
  for (const set of d.marks || []) {
    for (const p of set.points || []) {
      const [x, y] = toUnits(d, p);
      if (set.kind === "affine") {
        const s = r * 0.55;
        make("rect", { class: "pd-mark-affine", x: x - s / 2, y: y - s / 2, width: s, height: s,
                       transform: `rotate(45 ${x} ${y})` }, marks);
      } else {
        make("circle", { class: "pd-mark-landed", cx: x, cy: y, r: r * 0.45 }, marks);
      }
    }
  }

  const handles = st.layers.handles;
  handles.replaceChildren();
  st.points.forEach((p, i) => {
    const g = make("g", { class: "pd-handle", "data-index": i }, handles);
    make("circle", { class: "pd-hit", r: r * 1.7 }, g);
    make("circle", { class: "pd-dot", r }, g);
    if (d.labels !== false) {
      const t = make("text", { class: "pd-label", "font-size": (r * 1.15).toFixed(3) }, g);
      t.textContent = String(i + 1);
    }
    placeHandle(st, i);
  });
  drawLinks(st);
  st.root.dataset.version = String(d.version ?? "");
  st.root.dataset.points = String(st.points.length);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".pd-root");
  if (!root) root = build(parentElement);
  const st = root.__pd;
  st.send = setTriggerValue;
  if (!data) return;
  if (st.drag) {
    st.pending = data; // a rerun finished mid-drag: redraw after the release
    return;
  }
  render(st, data);
}
