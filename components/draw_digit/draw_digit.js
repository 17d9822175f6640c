// Draw digit: a black canvas to draw a digit on with the mouse (or a finger / pen).
// A Streamlit custom component (st.components.v2), plain ES module, no build step, no CDN.
//
// data (from Python, see components/draw_digit/__init__.py): size (CSS px of the square canvas),
//   stroke (line width as a fraction of the canvas side), clear_token (a change clears the canvas).
// Trigger "drawn" after every stroke (pointer released) and on "Clear":
//   {pixels: 784 integers 0..255 (28×28, row by row; light ink on black), strokes: count}.

const N = 28;

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "dd-root";
  root.setAttribute("data-testid", "draw-digit");
  const canvas = document.createElement("canvas");
  canvas.className = "dd-canvas";
  canvas.setAttribute("aria-label", "Draw a digit here");
  const bar = document.createElement("div");
  bar.className = "dd-bar";
  const clear = document.createElement("button");
  clear.className = "dd-clear";
  clear.type = "button";
  clear.textContent = "Clear";
  const hint = document.createElement("span");
  hint.className = "dd-hint";
  hint.textContent = "Draw one digit, large, in the middle.";
  bar.append(clear, hint);
  root.append(canvas, bar);
  parentElement.appendChild(root);
  const st = { root, canvas, ctx: canvas.getContext("2d"), drawing: null, strokes: 0, send: null, data: null,
               clearToken: null, side: 0 };
  root.__dd = st;

  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * st.side, ((e.clientY - r.top) / r.height) * st.side];
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    const [x, y] = pos(e);
    st.drawing = { last: [x, y] };
    dot(st, x, y);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!st.drawing) return;
    e.preventDefault();
    const [x, y] = pos(e);
    const [x0, y0] = st.drawing.last;
    const c = st.ctx;
    c.beginPath();
    c.moveTo(x0, y0);
    c.lineTo(x, y);
    c.stroke();
    st.drawing.last = [x, y];
  });
  const finish = () => {
    if (!st.drawing) return;
    st.drawing = null;
    st.strokes += 1;
    send(st);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  canvas.addEventListener("lostpointercapture", finish);
  clear.addEventListener("click", () => {
    wipe(st);
    st.strokes = 0;
    send(st);
  });
  return root;
}

function setup(st, d) {
  const size = Math.max(120, Math.min(600, Number(d.size) || 280));
  const ratio = window.devicePixelRatio || 1;
  const side = Math.round(size * ratio);
  if (st.side !== side) {
    const keep = st.side ? st.canvas.toDataURL() : null;
    st.canvas.width = side;
    st.canvas.height = side;
    st.canvas.style.width = size + "px";
    st.canvas.style.height = size + "px";
    st.side = side;
    wipe(st);
    if (keep) {
      const img = new Image();
      img.onload = () => st.ctx.drawImage(img, 0, 0, side, side);
      img.src = keep;
    }
  }
  const c = st.ctx;
  c.strokeStyle = "#ffffff";
  c.fillStyle = "#ffffff";
  c.lineCap = "round";
  c.lineJoin = "round";
  c.lineWidth = (Number(d.stroke) || 0.075) * side;
}

function wipe(st) {
  const c = st.ctx;
  c.save();
  c.fillStyle = "#000000";
  c.fillRect(0, 0, st.canvas.width, st.canvas.height);
  c.restore();
  st.root.dataset.strokes = "0";
}

function dot(st, x, y) {
  const c = st.ctx;
  c.beginPath();
  c.arc(x, y, c.lineWidth / 2, 0, 2 * Math.PI);
  c.fill();
}

function pixels(st) {
  // Average the canvas down to 28×28 in two smooth steps (a box filter, like an area resize).
  const mid = document.createElement("canvas");
  mid.width = N * 4;
  mid.height = N * 4;
  const m = mid.getContext("2d");
  m.imageSmoothingEnabled = true;
  m.imageSmoothingQuality = "high";
  m.drawImage(st.canvas, 0, 0, mid.width, mid.height);
  const src = m.getImageData(0, 0, mid.width, mid.height).data;
  const out = new Array(N * N).fill(0);
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      let s = 0;
      for (let dy = 0; dy < 4; dy++) {
        for (let dx = 0; dx < 4; dx++) s += src[((y * 4 + dy) * mid.width + (x * 4 + dx)) * 4];
      }
      out[y * N + x] = Math.round(s / 16);
    }
  }
  return out;
}

function send(st) {
  st.root.dataset.strokes = String(st.strokes);
  if (st.send) st.send("drawn", { pixels: pixels(st), strokes: st.strokes });
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".dd-root");
  if (!root) root = build(parentElement);
  const st = root.__dd;
  st.send = setTriggerValue;
  const d = data || {};
  setup(st, d);
  if (st.clearToken !== null && d.clear_token !== st.clearToken) {
    wipe(st);
    st.strokes = 0;
  }
  st.clearToken = d.clear_token ?? null;
  st.root.dataset.ready = "true";
}
