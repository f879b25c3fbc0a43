"""The "Pronunciation lexicon" panel of the Synthesize tab: a table of terms and how to say
them, saved, imported from and exported to CSV; and the preview of what the voice will say,
which the lexicon changes.

Which lexicon a click uses and edits (``Lexicons``): on a private deployment the deployment's
own, saved to its file and shared by everyone on this computer; on a public one the visitor's
entries, kept in their session only and layered over the operator's lexicon, which visitors
cannot change. Editing belongs to the page: never an API call or an MCP tool.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webapp.components.downloads import write_downloads
from webapp.components.events import PAGE_ONLY, bind
from webapp.messages import user_message
from webapp.pipeline.errors import InputError, PipelineError
from webapp.pipeline.text.lexicon import MAX_CSV_CHARS, MAX_SESSION_ENTRIES, Lexicon, LexiconEntry
from webapp.services import Services


class Lexicons:
    """The lexicon of a click: the deployment's (private) or the visitor's session rows over
    the operator's (public)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.public = services.settings.public

    def own(self, session_rows: list | None) -> list[LexiconEntry]:
        if self.public:
            return [LexiconEntry(*row) for row in (session_rows or [])]
        return self.services.lexicon.entries if self.services.lexicon is not None else []

    def effective(self, session_rows: list | None) -> Lexicon | None:
        if self.public and session_rows:
            return Lexicon.layered(self.services.lexicon, self.own(session_rows))
        return None  # the synthesizer's deployment lexicon

    def store(self, entries: list[LexiconEntry]) -> list:
        """Validate and keep ``entries``; returns the new session rows (public)."""
        if self.public:
            if len(entries) > MAX_SESSION_ENTRIES:
                raise InputError(f"Your lexicon has {len(entries)} entries; on this shared demo the "
                                 f"limit is {MAX_SESSION_ENTRIES}.")
            checked = Lexicon(entries).entries  # validates; later entries win
            return [[e.term, e.respelling, e.case_sensitive] for e in checked]
        self.services.lexicon.replace(entries)
        self.services.lexicon.save()
        return []


def safe_preview(services: Services, value: str, lexicon: Lexicon | None = None,
                 speakers=()) -> str:
    """The spoken form of ``value`` for the preview box; a problem is said in the box."""
    if not value or not value.strip():
        return ""
    try:
        return services.synthesizer.preview(value, lexicon, speakers)
    except PipelineError as exc:
        return f"({user_message(exc, public=services.settings.public)})"


def _rows(entries: list[LexiconEntry]) -> list[list]:
    return [[e.term, e.respelling, e.case_sensitive] for e in entries]


def _entries(rows) -> list[LexiconEntry]:
    """Table rows (a DataFrame or lists) -> entries; blank rows are skipped."""
    entries = []
    values = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
    for row in values:
        term = str(row[0] or "").strip() if len(row) > 0 else ""
        respelling = str(row[1] or "").strip() if len(row) > 1 else ""
        if not term and not respelling:
            continue
        flag = str(row[2]).lower() if len(row) > 2 else ""
        entries.append(LexiconEntry(term, respelling, flag not in ("", "false", "0", "no", "none", "nan")))
    return entries


def _lexicon_file(entries: list[LexiconEntry]) -> str:
    return write_downloads("lexicon", {"csv": Lexicon(entries).to_csv()})[0]


def _outputs(services: Services, own_rows, text_value):
    """The table, the preview with the new lexicon, the export file and the session rows."""
    lexicons = Lexicons(services)
    own = lexicons.own(own_rows)
    return (_rows(own), safe_preview(services, text_value, lexicons.effective(own_rows)),
            _lexicon_file(own), own_rows)


def on_lexicon_save(services: Services, rows, text_value, own_rows):
    entries = _entries(rows)
    own_rows = Lexicons(services).store(entries)
    gr.Info(f"Lexicon saved ({len(entries)} entries).")
    return _outputs(services, own_rows, text_value)


def on_lexicon_import(services: Services, file, text_value, own_rows):
    if not file:
        raise gr.Error("Choose a CSV file to import.")
    lexicons = Lexicons(services)
    try:
        raw = Path(file).read_bytes()[:MAX_CSV_CHARS + 1].decode("utf-8-sig")
        entries = Lexicon.parse_csv(raw)
        own_rows = lexicons.store(lexicons.own(own_rows) + entries)
    except UnicodeDecodeError:
        raise gr.Error("The lexicon file is not UTF-8 text.") from None
    except OSError:
        raise gr.Error("The uploaded file could not be read; upload it again.") from None
    gr.Info(f"Imported {len(entries)} entries.")
    return _outputs(services, own_rows, text_value)


def build_lexicon_panel(services: Services, text: gr.Textbox, preview: gr.Textbox,
                        session_lexicon: gr.State) -> None:
    """The accordion and its events (``text`` and ``preview``: the tab's lesson and preview)."""
    own = Lexicons(services).own([])
    with gr.Accordion("Pronunciation lexicon (applied before numbers and formulas)", open=False):
        if services.settings.public:
            operator_count = len(services.lexicon.entries) if services.lexicon is not None else 0
            gr.Markdown("Teach the voice a name or term: write how it should be said, e.g. "
                        "*Nguyen → win*, *ATP → A T P*. Your entries apply only to this browser "
                        "session and are forgotten when you close the page; the server's own "
                        f"list ({operator_count} entries) applies too.")
        else:
            gr.Markdown("Teach the voice a name or term: write how it should be said, e.g. "
                        "*Nguyen → win*, *ATP → A T P*. Saved for everyone using this computer.")
        table = gr.Dataframe(
            headers=["term", "respelling", "case sensitive"], datatype=["str", "str", "bool"],
            value=_rows(own), column_count=(3, "fixed"), interactive=True,
            row_count=(max(3, len(own) + 1), "dynamic"), elem_id="lexicon-table",
        )
        with gr.Row():
            save = gr.Button("Save lexicon", size="sm", variant="primary", elem_id="lexicon-save")
            upload = gr.UploadButton("Import CSV", file_types=[".csv"], size="sm",
                                     elem_id="lexicon-import")
            export = gr.DownloadButton("Export CSV", size="sm", elem_id="lexicon-export",
                                       value=_lexicon_file(own))
    if services.lexicon is None:
        return
    outputs = [table, preview, export, session_lexicon]
    save.click(bind(services, on_lexicon_save), [table, text, session_lexicon], outputs,
               api_visibility=PAGE_ONLY)
    upload.upload(bind(services, on_lexicon_import), [upload, text, session_lexicon], outputs,
                  api_visibility=PAGE_ONLY)
