// Speech Studio live player: plays synthesis chunks through Web Audio as they arrive.
//
// Gradio's streaming audio output re-encodes to AAC/HLS and measured 590 ms to first sound with
// 1.2-1.6 s gaps mid-sentence here; a progressive WAV waits for ~224 KiB. Reading raw PCM with
// fetch() and scheduling AudioBuffers back to back starts within milliseconds of the first
// chunk and leaves no gaps as long as synthesis runs faster than real time.
(function () {
  if (window.speechStudio) return;
  const state = { ctx: null, controller: null, sources: [] };
  // reads: how many pieces fetch() handed over. That is the transport's grouping, not the
  // server's chunks: the browser merges whatever arrived since its last read (all of it when
  // synthesis outruns the page, e.g. cached sentences) and may split a chunk in two. What was
  // heard is samples (at sampleRate), from firstSoundAt on.
  const stats = { clickAt: 0, firstSoundAt: 0, reads: 0, bytes: 0, samples: 0, sampleRate: 0,
                  underruns: 0, audioSeconds: 0, done: false, error: null, token: null };
  window.speechStudioStats = stats;

  // Stream tokens are issued by the server (only issued tokens are accepted, one reader each).
  async function newToken() {
    try {
      const r = await fetch("api/tts/live", { method: "POST", cache: "no-store" });
      if (!r.ok) return "";
      return (await r.json()).token || "";
    } catch (e) { return ""; }
  }

  function setStatus(text) {
    const el = document.getElementById("live-status");
    if (el) el.textContent = text;
  }

  function stop() {
    if (state.controller) state.controller.abort();
    state.sources.forEach((s) => { try { s.stop(); } catch (e) { /* already stopped */ } });
    state.sources = [];
    if (state.ctx) { state.ctx.close(); state.ctx = null; }
  }

  // Called from the Synthesize click: the audio context is made inside the click (so the
  // browser lets it play), then a token is fetched; returns the token for the handler
  // ("" when live playback is unavailable: the finished file still arrives).
  async function start() {
    stop();
    const clickAt = performance.now();
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    state.ctx = ctx;
    const token = await newToken();
    if (!token || state.ctx !== ctx) { stats.error = "no stream token"; return ""; }
    play(token, ctx, clickAt);
    return token;
  }

  async function play(token, ctx, clickAt) {
    Object.assign(stats, { clickAt, firstSoundAt: 0, reads: 0, bytes: 0, samples: 0,
                           sampleRate: 0, underruns: 0, audioSeconds: 0, done: false, error: null,
                           token });
    const controller = new AbortController();
    state.controller = controller;
    setStatus("Preparing audio…");
    let response;
    try {
      response = await fetch("api/tts/live/" + token, { signal: controller.signal, cache: "no-store" });
    } catch (e) { stats.error = String(e); return; }
    if (!response.ok) { stats.error = "HTTP " + response.status; setStatus(""); return; }
    const rate = parseInt(response.headers.get("X-Sample-Rate") || "22050", 10);
    stats.sampleRate = rate;
    const reader = response.body.getReader();
    let carry = null;  // an odd trailing byte waits for the next chunk
    let nextTime = 0;
    for (;;) {
      let part;
      try { part = await reader.read(); } catch (e) { break; }
      if (part.done) break;
      let bytes = part.value;
      if (carry) { const j = new Uint8Array(carry.length + bytes.length); j.set(carry); j.set(bytes, carry.length); bytes = j; carry = null; }
      if (bytes.length % 2) { carry = bytes.slice(bytes.length - 1); bytes = bytes.slice(0, bytes.length - 1); }
      if (!bytes.length) continue;
      const pcm = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
      const buffer = ctx.createBuffer(1, pcm.length, rate);
      const data = buffer.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(ctx.destination);
      const now = ctx.currentTime;
      if (stats.samples > 0 && nextTime < now) stats.underruns += 1;
      const startAt = Math.max(nextTime, now + 0.005);
      src.start(startAt);
      state.sources.push(src);
      if (!stats.firstSoundAt) {
        stats.firstSoundAt = performance.now() + (startAt - now) * 1000;
        setStatus("Playing…");
      }
      nextTime = startAt + buffer.duration;
      stats.reads += 1;
      stats.bytes += bytes.length;
      stats.samples += pcm.length;
      stats.audioSeconds += buffer.duration;
    }
    stats.done = true;
    const left = Math.max(0, nextTime - ctx.currentTime);
    setTimeout(() => { if (state.ctx === ctx) setStatus(""); }, left * 1000);
  }

  window.speechStudio = { start, stop, stats };
})();
