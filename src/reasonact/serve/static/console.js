// reasonact steering console: draws the camera, traces and depth; sends commands over /ws.
"use strict";
(() => {
  const cam = document.getElementById("camera");
  const ctx = cam.getContext("2d");
  const depthCanvas = document.getElementById("depth");
  const $ = (id) => document.getElementById(id);
  const frame = new Image();
  const depthImg = new Image();
  const attnImg = new Image();
  let state = null;
  let stroke = null; // points being drawn, in image pixels
  let ws = null;

  function send(cmd, extra) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(Object.assign({ cmd }, extra || {})));
  }

  function toImage(ev) {
    const r = cam.getBoundingClientRect();
    const res = state ? state.resolution : 64;
    return [((ev.clientX - r.left) / r.width) * res, ((ev.clientY - r.top) / r.height) * res];
  }

  function polyline(points, color, width, dots, dash) {
    if (!points || points.length === 0 || !state) return;
    const s = cam.width / state.resolution;
    ctx.save();
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = width;
    ctx.lineJoin = "round"; ctx.lineCap = "round";
    if (dash) ctx.setLineDash(dash);
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
    ctx.stroke();
    ctx.setLineDash([]);
    if (dots) points.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x * s, y * s, i === points.length - 1 ? 7 : 4.5, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.restore();
  }

  function draw() {
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, cam.width, cam.height);
    if (frame.complete && frame.naturalWidth) ctx.drawImage(frame, 0, 0, cam.width, cam.height);
    if (!state) return;
    polyline(state.path, "rgba(255,255,255,0.8)", 2, false);
    polyline(state.drawn, "rgba(255,200,0,0.55)", 3, false, [8, 6]);
    // A given trace is what the policy follows: show it in yellow; otherwise show the policy's own plan.
    if (state.given_trace) polyline(state.given_trace, "#ffc800", 4, true);
    else polyline(state.trace, "#00ff78", 4, true);
    polyline(stroke, "#ffc800", 4, false);
    // The written object points (points block): where the policy thinks the object and the goal are.
    (state.points || []).forEach(([x, y], i) => {
      const s = cam.width / state.resolution;
      ctx.save();
      ctx.strokeStyle = i === 0 ? "#ff40ff" : "#40c0ff"; ctx.lineWidth = 3;
      ctx.beginPath(); ctx.arc(x * s, y * s, 10, 0, 2 * Math.PI); ctx.stroke();
      ctx.restore();
    });
  }

  function render(msg) {
    state = msg;
    window.consoleState = msg; // for scripts and tests
    document.getElementById("points-key").hidden = !msg.points;
    document.body.dataset.step = String(msg.step);
    $("task").textContent = `${msg.task} — “${msg.instruction}”`;
    $("step-count").textContent = msg.step;
    const badge = $("success");
    badge.textContent = msg.success ? "success" : msg.done ? "failed (step limit)" : msg.running ? "running" : "ready";
    badge.className = "badge" + (msg.success ? " ok" : msg.done ? " fail" : "");
    $("seed").textContent = msg.seed;
    $("policy").textContent = `${msg.decoder} decoder, reasoning ${msg.reasoning}`;
    $("timing").textContent = `${msg.latency_ms.toFixed(1)} ms, ${msg.nfe} forward passes`;
    $("run").disabled = msg.running || msg.done;
    $("step").disabled = msg.running || msg.done;
    $("pause").disabled = !msg.running;
    $("clear").disabled = !msg.drawn;
    $("no-depth").textContent = "This policy writes no depth tokens.";
    $("no-depth").style.display = msg.depth ? "none" : "";
    depthCanvas.style.display = msg.depth ? "block" : "none";
    if (msg.depth) depthImg.src = msg.depth;
    $("no-attention").textContent = "No attention map for this policy.";
    $("no-attention").style.display = msg.attention ? "none" : "";
    $("attention").style.display = msg.attention ? "block" : "none";
    if (msg.attention) attnImg.src = msg.attention;
    $("rationale").textContent = msg.rationale || "This policy writes no rationale.";
    $("rationale").className = msg.rationale ? "" : "muted";
    const views = Object.entries(msg.views || {});
    $("views-panel").style.display = views.length ? "" : "none";
    $("views").replaceChildren(...views.map(([name, url]) => {
      const img = new Image(256, 256);
      img.src = url;
      img.alt = img.title = name;
      img.style.imageRendering = "pixelated";
      return img;
    }));
    frame.src = msg.frame;
  }

  frame.onload = draw;
  const paint = (img, canvas) => () => {
    const c = canvas.getContext("2d");
    c.imageSmoothingEnabled = false;
    c.drawImage(img, 0, 0, canvas.width, canvas.height);
  };
  depthImg.onload = paint(depthImg, depthCanvas);
  attnImg.onload = paint(attnImg, $("attention"));

  cam.addEventListener("pointerdown", (ev) => {
    cam.setPointerCapture(ev.pointerId);
    stroke = [toImage(ev)];
    draw();
  });
  cam.addEventListener("pointermove", (ev) => {
    if (!stroke) return;
    const p = toImage(ev), q = stroke[stroke.length - 1];
    if (Math.hypot(p[0] - q[0], p[1] - q[1]) > 0.5) { stroke.push(p); draw(); }
  });
  const finish = () => {
    if (!stroke) return;
    if (stroke.length >= 2) send("trace", { points: stroke });
    stroke = null;
    draw();
  };
  cam.addEventListener("pointerup", finish);
  cam.addEventListener("pointercancel", finish);

  $("step").onclick = () => send("step");
  $("run").onclick = () => send("run");
  $("pause").onclick = () => send("pause");
  $("reset").onclick = () => send("reset");
  $("clear").onclick = () => send("clear_trace");

  function connect() {
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => { $("conn").textContent = "connected"; $("conn").className = "badge ok"; };
    ws.onclose = () => {
      $("conn").textContent = "disconnected"; $("conn").className = "badge off";
      setTimeout(connect, 1000);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "error") { $("error").textContent = msg.error; return; }
      $("error").textContent = "";
      render(msg);
    };
  }
  connect();
})();
