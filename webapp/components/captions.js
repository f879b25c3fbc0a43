// Speech Studio live captions: microphone -> AudioWorklet -> WebSocket -> captions.
//
// Why not Gradio's streaming microphone: chunks that arrive while the server handler is still
// busy are never delivered (45 % of the speech was lost, issue 8) and the last part-chunk
// before Stop is never sent. Here an AudioWorklet hands over every captured sample (0.1 s at a
// time), the page sends them as 16-bit PCM over the app's WebSocket (/api/live/captions), and
// the server decodes on a thread of its own, so receiving never waits for decoding. Stop first
// flushes the worklet's last samples, then asks for the final captions.
//
// window.speechStudioCaptions.stats/log expose what was captured, sent and shown, with times,
// for the browser tests and bench/live_e2e.py.
(function () {
  if (window.speechStudioCaptions) return;

  const WORKLET = `
    class SpeechStudioCapture extends AudioWorkletProcessor {
      constructor() {
        super();
        this.buf = new Float32Array(Math.round(sampleRate * 0.1));
        this.n = 0;
        this.stopped = false;
        this.port.onmessage = (e) => {
          if (e.data === "flush") {
            this.port.postMessage({ samples: this.buf.slice(0, this.n), last: true });
            this.n = 0;
            this.stopped = true;
          }
        };
      }
      process(inputs) {
        if (this.stopped) return false;
        const input = inputs[0];
        if (input && input.length) {
          const channels = input.length, len = input[0].length;
          for (let i = 0; i < len; i++) {
            let v = 0;
            for (let c = 0; c < channels; c++) v += input[c][i];
            this.buf[this.n++] = v / channels;
            if (this.n === this.buf.length) {
              this.port.postMessage({ samples: this.buf.slice(0), last: false });
              this.n = 0;
            }
          }
        }
        return true;
      }
    }
    registerProcessor("speech-studio-capture", SpeechStudioCapture);
  `;

  const api = { stats: null, log: [], recording: false };
  window.speechStudioCaptions = api;
  let session = null;

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  function setState(text, kind) {
    const el = $("live-state");
    if (!el) return;
    el.textContent = text;
    el.dataset.kind = kind || "info";
  }

  function setButtons(recording) {
    const rec = $("live-record"), stop = $("live-stop");
    if (rec) rec.disabled = recording;
    if (stop) stop.disabled = !recording;
    const panel = $("live-panel");
    if (panel) panel.dataset.recording = recording ? "1" : "0";
  }

  function render(committed, pending) {
    const box = $("live-captions-text");
    if (!box) return;
    if (!committed && !pending) {
      box.innerHTML = '<span class="pending-text">Captions appear here while you speak.</span>';
      return;
    }
    box.innerHTML = '<span class="committed-text" id="captions-committed">' + esc(committed) +
      '</span> <span class="pending-text" id="captions-pending">' + esc(pending) + "</span>";
    box.scrollTop = box.scrollHeight;
  }

  function value(selector) {
    const el = document.querySelector(selector);
    return el ? el.value : "";
  }

  function checked(selector) {
    const el = document.querySelector(selector);
    return !!(el && el.checked);
  }

  function level(samples) {
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const rms = Math.sqrt(sum / Math.max(1, samples.length));
    const db = 20 * Math.log10(rms + 1e-9);
    const bar = document.querySelector("#live-level > span");
    if (bar) bar.style.width = Math.max(0, Math.min(100, (db + 60) * 100 / 60)) + "%";
  }

  function fmt(s) {
    const m = Math.floor(s / 60), r = Math.floor(s % 60);
    return m + ":" + String(r).padStart(2, "0");
  }

  function toPcm16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      out[i] = v < 0 ? v * 32768 : v * 32767;
    }
    return out.buffer;
  }

  function cleanup(s) {
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    if (s.ctx && s.ctx.state !== "closed") s.ctx.close();
    s.stream = null;
    s.ctx = null;
  }

  function finish(s, text, kind) {
    cleanup(s);
    if (s.ws && s.ws.readyState <= 1) { try { s.ws.close(); } catch (e) { /* closed */ } }
    if (session === s) session = null;
    api.recording = false;
    api.stats.ended = true;
    setButtons(false);
    setState(text, kind);
  }

  function onMessage(s, event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (e) { return; }
    const st = api.stats;
    if (msg.type === "ready") {
      s.ready = true;
      s.maxSeconds = msg.max_seconds;
      showShare(msg.view);
      s.queue.forEach((b) => s.ws.send(b));
      s.queue = [];
      if (s.stopAfterReady) sendStop(s);
      return;
    }
    if (msg.type === "error") {
      st.error = msg.message;
      finish(s, msg.message, "error");
      return;
    }
    if (msg.type !== "captions") return;
    const now = performance.now();
    api.log.push({ t: now, wall: Date.now(), committed: msg.committed, pending: msg.pending,
                   new_words: msg.new_words, received_s: msg.received_s,
                   backlog_s: msg.backlog_s, final: msg.final });
    st.receivedS = msg.received_s;
    st.processedS = msg.processed_s;
    st.computeS = msg.compute_s;
    st.committed = msg.committed;
    render(msg.committed, msg.pending);
    if (msg.final) {
      st.final = true;
      showTranscript(msg.transcript);
      const words = msg.committed ? msg.committed.split(/\s+/).length : 0;
      finish(s, (msg.notice ? msg.notice + " " : "Stopped. ") + fmt(msg.received_s) +
             " of audio captioned (" + words + " words). Press Record to start a new " +
             "transcript.", msg.notice ? "behind" : "done");
      return;
    }
    if (s.stopping) return;
    if (msg.backlog_s > 1.0) {
      setState("Recording " + fmt(msg.received_s) + " · captions are " +
               msg.backlog_s.toFixed(1) + " s behind (the computer is busy); catching up…", "behind");
    } else {
      setState("Recording " + fmt(msg.received_s) + " · listening", "recording");
    }
  }

  // The caption view of this recording (webapp/caption_view.py), for a room or a stream.
  function showShare(view) {
    const box = $("live-share");
    if (!box || !view) return;
    const url = new URL(view, document.baseURI).href;
    api.stats.viewUrl = url;
    $("live-view-link").href = url;
    $("live-overlay-link").href = url + "?overlay=1";
    box.hidden = false;
  }

  function hideShare() {
    ["live-share", "live-transcript"].forEach((id) => { const el = $(id); if (el) el.hidden = true; });
  }

  function showTranscript(paths) {
    const box = $("live-transcript");
    if (!box || !paths) return;
    for (const fmt of ["txt", "srt", "vtt"]) {
      const a = $("live-transcript-" + fmt);
      if (a && paths[fmt]) a.href = new URL(paths[fmt], document.baseURI).href;
    }
    api.stats.transcript = paths;
    box.hidden = false;
    const share = $("live-share");
    if (share) share.hidden = true;  // the view says the recording ended; nothing to share
  }

  function send(s, buffer) {
    if (s.ready && s.ws.readyState === 1) s.ws.send(buffer);
    else s.queue.push(buffer);
  }

  function sendStop(s) {
    if (!s.ready) { s.stopAfterReady = true; return; }
    s.ws.send(JSON.stringify({ type: "stop" }));
    api.stats.stopSentAt = performance.now();
  }

  async function start() {
    if (session) return;
    api.log = [];
    api.stats = { clickAt: performance.now(), t0: 0, sampleRate: 0, capturedSamples: 0,
                  sentSamples: 0, receivedS: 0, processedS: 0, computeS: 0, committed: "",
                  final: false, ended: false, error: null, stopSentAt: 0 };
    render("", "");
    hideShare();
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      api.stats.error = "insecure";
      setState("This page cannot use the microphone here: open it over https:// or as " +
               "http://localhost on this computer.", "error");
      return;
    }
    const s = { ws: null, ctx: null, stream: null, node: null, ready: false, queue: [],
                stopping: false, stopAfterReady: false };
    session = s;
    api.recording = true;
    setButtons(true);
    setState("Starting the microphone…", "info");
    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false,
                 channelCount: 1 } });
      s.ctx = new (window.AudioContext || window.webkitAudioContext)();
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      await s.ctx.audioWorklet.addModule(url);
      URL.revokeObjectURL(url);
    } catch (e) {
      const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
      api.stats.error = String(e);
      finish(s, denied
        ? "The microphone is blocked. Allow it for this page (the icon left of the address) " +
          "and press Record again."
        : "Could not start the microphone: " + (e && e.message ? e.message : e), "error");
      return;
    }
    if (session !== s) { cleanup(s); return; }
    const rate = s.ctx.sampleRate;
    api.stats.sampleRate = rate;
    const wsUrl = new URL("api/live/captions", document.baseURI);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    s.ws = new WebSocket(wsUrl.href);
    s.ws.binaryType = "arraybuffer";
    s.ws.onopen = () => s.ws.send(JSON.stringify({
      type: "start", sample_rate: rate,
      vocabulary: value("#stt-vocabulary textarea") || value("#stt-vocabulary input"),
      denoise: checked("#live-denoise input") }));
    s.ws.onmessage = (e) => onMessage(s, e);
    s.ws.onclose = () => {
      if (session === s && !api.stats.final && !api.stats.error) {
        api.stats.error = "closed";
        finish(s, "The connection to the server was lost; the captions above are what " +
               "arrived. Press Record to start again.", "error");
      }
    };
    const source = s.ctx.createMediaStreamSource(s.stream);
    s.node = new AudioWorkletNode(s.ctx, "speech-studio-capture",
                                  { numberOfOutputs: 1, outputChannelCount: [1] });
    s.node.port.onmessage = (e) => {
      const samples = e.data.samples;
      const st = api.stats;
      if (!st.t0 && samples.length) st.t0 = performance.now() - 1000 * samples.length / rate;
      st.capturedSamples += samples.length;
      if (samples.length) {
        level(samples);
        send(s, toPcm16(samples));
        st.sentSamples += samples.length;
      }
      if (e.data.last) {
        cleanup(s);
        sendStop(s);
      }
    };
    const mute = s.ctx.createGain();
    mute.gain.value = 0;
    source.connect(s.node);
    s.node.connect(mute);
    mute.connect(s.ctx.destination);
    setState("Recording · listening", "recording");
  }

  function stop() {
    const s = session;
    if (!s || s.stopping) return;
    s.stopping = true;
    setButtons(false);
    const rec = $("live-record");
    if (rec) rec.disabled = true;
    setState("Finishing the last words…", "info");
    if (s.node) s.node.port.postMessage("flush");
    else finish(s, "Stopped.", "done");
  }

  function copyLink() {
    const url = api.stats && api.stats.viewUrl;
    const button = $("live-copy-link");
    if (!url || !button) return;
    const done = (text) => { button.textContent = text; setTimeout(() => { button.textContent = "copy link"; }, 2000); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(() => done("copied"), () => done(url));
    } else {
      done(url);  // no clipboard on plain http: show the link to copy by hand
    }
  }

  api.start = start;
  api.stop = stop;
  document.addEventListener("click", (e) => {
    const t = e.target;
    if (!(t instanceof Element)) return;
    if (t.closest("#live-record")) start();
    else if (t.closest("#live-stop")) stop();
    else if (t.closest("#live-copy-link")) copyLink();
  });
})();
