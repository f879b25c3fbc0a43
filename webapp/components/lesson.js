// Chapter jump links under the Synthesize tab's replay player (webapp/components/lesson.py):
// a click on [data-seek] moves the player to that time and plays. Gradio keeps the player's
// <audio> inside shadow roots, so it is searched for through them.
(() => {
  const audios = (root) => [...root.querySelectorAll("audio"),
    ...[...root.querySelectorAll("*")].flatMap((e) => (e.shadowRoot ? audios(e.shadowRoot) : []))];
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("[data-seek]");
    if (!link) return;
    event.preventDefault();
    const holder = document.querySelector("#tts-audio");
    const audio = holder && audios(holder).find((a) => a.src);
    if (!audio) return;
    audio.currentTime = parseFloat(link.dataset.seek) || 0;
    audio.play().catch(() => {});
  });
})();
